"""Sensors evaluated with build_sensor_context: run requests, skip reasons and cursors."""
