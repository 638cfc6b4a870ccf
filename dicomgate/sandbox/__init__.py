"""Sandbox peers (Orthanc) and synthetic studies for tests, benchmarks and the demo."""
