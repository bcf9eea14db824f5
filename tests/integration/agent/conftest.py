from agent_harness import agent_factory, agent_kafka  # noqa: F401 - fixtures for this folder
