from .helpers import main

main()
