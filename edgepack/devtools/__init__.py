"""Development and test infrastructure (never copied into images): a local Service Bus broker and small sample
projects for tests, benchmarks and demos."""
