"""inhouse: private AI on the CPUs a company already owns."""

__version__ = "0.1.0"
