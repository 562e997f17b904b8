"""A web page for any crseg segmentor config: image + query -> mask, GLCoT text, attention.

    python tools/webui.py CONFIG [--checkpoint CKPT] [--host 127.0.0.1] [--port 7860]
                          [--device DEV] [--examples 4] [--cfg-options k=v ...]

Serves the embedded default after ``make demo`` (``make webui`` does exactly that), a real
config with local weights, or a training-free config with no checkpoint. The model is loaded
once; requests are queued (Gradio's queue, one at a time through the model), so concurrent
users each get their own result. It binds 127.0.0.1 unless ``--host`` says otherwise:
``--host 0.0.0.0`` serves every network interface of this machine, i.e. anyone who can reach
it can upload images and run the model (there is no authentication).
Everything the server writes (re-encoded uploads, mask PNGs, Gradio's upload cache) goes into
one temporary folder, ``--work-dir`` (default: a fresh folder under the system temp dir).
"""
import argparse
import os
import os.path as osp
import sys
import tempfile


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='crseg web demo (Gradio)')
    p.add_argument('config')
    p.add_argument('--checkpoint', default=None,
                   help="trained checkpoint; without it, all weights come from the config's "
                   'pretrained=/checkpoint= files')
    p.add_argument('--host', default='127.0.0.1',
                   help='interface to bind (default loopback only; 0.0.0.0 = every interface)')
    p.add_argument('--port', type=int, default=7860)
    p.add_argument('--device', default=None,
                   help='cpu, cuda, cuda:1 ... (default: cuda when available, else cpu)')
    p.add_argument('--examples', type=int, default=4,
                   help="clickable examples from the config's test set (0: none)")
    p.add_argument('--work-dir', default=None, help='where the server writes its files')
    p.add_argument('--max-side', type=int, default=2048)
    p.add_argument('--max-query-chars', type=int, default=2000)
    from crseg.utils.cfg_options import CfgOptionsAction
    p.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction,
                   help='override config settings, key=value pairs')
    args = p.parse_args(argv)
    from crseg.apis.inferencer import default_device
    args.device = args.device or default_device()
    if not 0 < args.port < 65536:
        p.error(f'--port {args.port} is not a TCP port')
    return args


def test_set_examples(cfg, n: int):
    """Up to ``n`` (image path, query) pairs from the config's test set; [] if unreadable."""
    if n <= 0:
        return []
    from mmengine.logging import print_log
    from crseg.registry import DATASETS
    try:
        ds_cfg = cfg.test_dataloader.dataset.copy()
        ds_cfg['pipeline'] = []
        ds = DATASETS.build(ds_cfg)
        out = []
        for i in range(min(n, len(ds))):
            info = ds.get_data_info(i)
            out.append((info['img_path'], info['query']))
        return out
    except Exception as err:  # the demo works without examples; say why there are none
        print_log(f'webui: no examples from the test set ({type(err).__name__}: {err})',
                  logger='current', level=30)
        return []


def main(argv=None):
    args = parse_args(argv)
    work_dir = args.work_dir or tempfile.mkdtemp(prefix='crseg-webui-')
    os.makedirs(work_dir, exist_ok=True)
    os.environ['GRADIO_TEMP_DIR'] = osp.join(work_dir, 'gradio')  # before gradio is imported
    os.environ.setdefault('GRADIO_ANALYTICS_ENABLED', 'False')
    from crseg.apis import ReasonSegInferencer
    from crseg.apis.webui import Limits, WebDemo, build_app
    inferencer = ReasonSegInferencer(args.config, args.checkpoint, args.device,
                                     args.cfg_options, what='tools/webui.py')
    examples = test_set_examples(inferencer.cfg, args.examples)
    limits = Limits(max_side=args.max_side, max_query_chars=args.max_query_chars)
    demo = WebDemo(inferencer, work_dir, limits)
    app = build_app(demo, examples, title=f'crseg ({osp.basename(args.config)})')
    print(f'crseg webui: http://{args.host}:{args.port} (files in {work_dir})', flush=True)
    app.queue(default_concurrency_limit=1).launch(
        server_name=args.host, server_port=args.port, show_error=True, ssr_mode=False,
        allowed_paths=[work_dir] + sorted({osp.dirname(p) for p, _ in examples}),
        quiet=True)


if __name__ == '__main__':
    sys.exit(main())
