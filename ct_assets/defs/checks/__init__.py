"""Asset checks defined apart from their asset: the Great Expectations adapter and the freshness checks."""
