"""Item analysis over graded results: facility, discrimination, distractors, reliability."""
