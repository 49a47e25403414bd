from hitgen.cli import main

main()
