"""Datasets: the golden set (golden), the training data set as a recorded selection (training), the
canonical row key and order (keys), leak and exploration measures (overlap), a CT run's recording (record)."""
