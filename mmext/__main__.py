"""Command line entry: ``python -m mmext doctor`` and ``python -m mmext explain``."""
import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m mmext')
    sub = parser.add_subparsers(dest='cmd', required=True)
    sub.add_parser('doctor', help='check the installation and say how to fix what is wrong')
    explain = sub.add_parser('explain', help='explain an error message in one line')
    explain.add_argument('message', nargs='+', help='the error text (quote it)')
    args = parser.parse_args(argv)
    if args.cmd == 'doctor':
        from .doctor import run
        return run()
    from .utils.errors import explain as explain_text
    text = ' '.join(args.message)
    msg = explain_text(RuntimeError(text))
    print(msg or 'not a known error; run `python -m mmext doctor` and see docs/get_started.md')
    return 0 if msg else 1


if __name__ == '__main__':
    sys.exit(main())
