"""Monthly supply-quality reports: PDF and CSV, archived with versions."""
