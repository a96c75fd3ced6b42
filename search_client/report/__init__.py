"""Pictures and summaries of a run folder."""
