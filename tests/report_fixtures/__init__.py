"""The report's fixture results, one module per problem (each writes what its script writes)."""
