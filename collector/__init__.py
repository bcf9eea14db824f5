"""The per-host collector: sources, identity and signing, spool and publisher, agent."""
