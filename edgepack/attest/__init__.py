"""Supply-chain records of a built image: what is in it (a CycloneDX SBOM) and how it was made (an in-toto
statement with a SLSA provenance v1 predicate). Pure values: a ``BuildRecord`` in, JSON documents out."""
