"""Tests of the plain logic, without Dagster."""
