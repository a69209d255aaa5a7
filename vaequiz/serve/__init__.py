"""`vaequiz serve`: quizzes served live over HTTP, answers and grades kept in a database.

Built on the bank, render and grading packages through their public functions; nothing else
in vaequiz imports this package (its dependencies are the optional ``serve`` extra).
"""
