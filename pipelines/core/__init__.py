"""The kernel every layer shares: configuration, the warehouse layout, schemas, SQL, errors.

It imports no other part of seqrep."""
