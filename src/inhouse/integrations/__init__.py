"""Classes for client frameworks, each an optional extra: ``inhouse.integrations.langchain`` (``inhouse[langchain]``).
"""
