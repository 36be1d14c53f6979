"""Command line entry: ``python -m mmext train|test|infer|convert|doctor|explain``
(also installed as the ``mmext`` command).

``train``, ``test``, ``infer`` and ``convert`` are ``tools/train.py``,
``tools/test.py``, ``tools/image_demo.py`` and
``tools/model_converters/convert_official.py``, runnable from any folder with
an installed mmext.
"""
import argparse
import importlib
import os.path as osp
import sys

# subcommand: (module with main(argv, prog), help)
TOOLS = {
    'train': ('mmext.tools.train', 'train a config (tools/train.py)'),
    'test': ('mmext.tools.test', 'evaluate a checkpoint (tools/test.py)'),
    'infer': ('mmext.tools.image_demo', 'draw predictions on images (tools/image_demo.py)'),
    'convert': ('mmext.tools.convert_official', "convert an official checkpoint to mmext's "
                'layout (tools/model_converters/convert_official.py)'),
}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    prog = 'mmext' if osp.basename(sys.argv[0]) == 'mmext' else 'python -m mmext'
    if argv and argv[0] in TOOLS:
        # The tools parse their own arguments (and print their own --help).
        tool = importlib.import_module(TOOLS[argv[0]][0])
        return tool.main(argv[1:], prog=f'{prog} {argv[0]}')

    parser = argparse.ArgumentParser(prog=prog)
    sub = parser.add_subparsers(dest='cmd', required=True)
    for name, (_, text) in TOOLS.items():
        sub.add_parser(name, help=text, add_help=False)
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
