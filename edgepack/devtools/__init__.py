"""Development and test infrastructure (never copied into images): a local Service Bus broker."""
