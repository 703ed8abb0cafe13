"""Start the CainGAN pose editor: `python main.py [photos…] [--weights PATH] [--device auto]`."""

from app.run import main

if __name__ == "__main__":
    raise SystemExit(main())
