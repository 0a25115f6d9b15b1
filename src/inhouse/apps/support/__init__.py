"""The customer-service assistant: server-side sessions, grounded answers with citations, deterministic handoff
rules read from the support documents, and the embeddable widget's backend. Entry point: ``SupportAssistant``."""
