"""Predictions: the champion's scores of the rows that land (`scoring`), a waiting challenger's shadow
scores and their comparison on live rows (`shadow`), the label of a row as known now (`labels`), and
scoring a file outside the warehouse (`files`, for `ct-assets predict`)."""
