"""The operator console: a web page at /console/ on the shim's listener for
hospital IT and field engineers: overview, exams, problems (with actions), audit."""
