from sentiment_lstm.cli import console_main

# The guard keeps worker processes, which import this module again when the
# package runs as "python -m sentiment_lstm", from running the command.
if __name__ == "__main__":
    console_main()
