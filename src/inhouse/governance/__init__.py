"""Who may do what: identity (API keys), later users, groups, ACLs, policy and the audit log."""
