"""Reports and exports read from results.json: report.html, the SAEBench export, `sagec diff`."""
