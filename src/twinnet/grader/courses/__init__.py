"""What a course's own code needs that cannot be had where the grader runs: NumPy versions of its compiled helpers,
given to the students' files in place of modules that were never built (``twinnet.grader.loader``)."""
