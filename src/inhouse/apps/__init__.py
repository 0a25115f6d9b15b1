"""Enterprise assistants built on the chat service and the knowledge base.

Each assistant lives in its own subpackage (``minutes``, ``outline``, ``support``, ``schedule``) and takes an
``AppContext`` (``inhouse.apps.context``): who is calling, which chat service and model to use, the clock and the
caller's time zone. Assistants never import ``api``, ``cli`` or ``web``.
"""
