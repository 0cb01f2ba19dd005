"""The report: tables and figures from run folders, beside the published results."""
