"""The asset graph materialized through its jobs: the CT loop, the gate's scenarios, review, reports."""
