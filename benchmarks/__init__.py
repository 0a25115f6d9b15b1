"""Benchmarks of `inhouse serve` against llama-cpp-python (in-process `Llama` and `llama_cpp.server`).

Run ``python -m benchmarks.run --help``. Every figure that matters is a ratio of two numbers measured in
the same run, because this class of machine drifts (memory bandwidth moves by a third between minutes).
"""
