from vaequiz.cli import main

main()
