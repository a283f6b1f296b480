"""A web page that classifies a video with trained stream checkpoints, as tools/predict.py does.

    python tools/app.py --spatial record/spatial/checkpoint.pth.tar \\
        --motion record/motion/checkpoint.pth.tar [--clip ...] [--flow-clip ...] \\
        [--threshold 0.5] [--port 7860] [--host 0.0.0.0] [--examples clips/]

One command loads the checkpoints (a bad one is the usual one-line error, before anything is
served) and serves a Gradio page on http://127.0.0.1:7860 (the URL is printed). Drop a video on
it, pick an example or record one with the browser's webcam: the page shows the label (fused, or
``unknown`` below --threshold), each stream's and the fused top-k, the timeline of a video longer
than a window, the Grad-CAM strip of the most confident window, and the CSV predict --csv writes
(with a longer video, the --timeline CSVs too) to download. The scoring is predict's own
(engine/predict_video.py), options included; a video predict refuses is refused on the page
with predict's one-line message. Programs call the same with gradio_client (api_name
"/predict"), which also returns predict's --json record.

Nothing is sent anywhere: Gradio's analytics are off and no share link is made. The files a
result offers are written to a temporary folder (the last result's only), removed when the
server stops.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # read when gradio is imported: no telemetry

from engine.cli_predict import add_video_arguments, check_video_arguments, video_options
from engine.predict_video import VideoOptions, column_names, final_column, predict_one, write_cam
from engine.stream_setup import STREAM_OPTIONS, load_streams
from utils.cli import Parser
from utils.errors import UserError, one_line, run_cli
from utils.unknown import shown

HOST, PORT = "127.0.0.1", 7860
API = "predict"  # gradio_client: Client(url).predict(handle_file(video), api_name="/predict")


def get_args(argv=None) -> argparse.Namespace:
    parser = Parser(description=__doc__.split("\n")[0])
    add_video_arguments(parser)
    parser.add_argument(
        "--port",
        type=int,
        default=PORT,
        help="the port to serve on (0: the first free one from 7860)",
    )
    parser.add_argument(
        "--host",
        default=HOST,
        help="the address to serve on: 127.0.0.1 this machine only, 0.0.0.0 every network it is on",
    )
    parser.add_argument(
        "--examples",
        type=Path,
        nargs="+",
        metavar="VIDEO",
        help="videos (or folders of them) offered on the page as examples to click",
    )
    return parser.parse_args(argv)


class Classifier:
    """The loaded streams and options; ``classify(video)`` is the page's outputs for a video."""

    def __init__(self, options: VideoOptions, streams: dict, settings: dict, device):
        self.options, self.streams, self.settings, self.device = options, streams, settings, device
        self.classes = next(iter(streams.values())).classes
        self.names = column_names(streams)
        self.top = min(options.top, len(self.classes))
        self.folder = tempfile.TemporaryDirectory(prefix="two-stream-app-")
        self.last: Path | None = None  # the folder of the last result's files

    def classify(self, video: str | None) -> tuple:
        """(headline, fused top-k, each stream's top-k, timeline, Grad-CAM, files, JSON record);
        a video predict refuses is a gr.Error with predict's message."""
        import gradio as gr

        if not video:
            return "", None, None, None, None, None, None
        path, start = Path(video), time.perf_counter()
        try:
            result, drawn = predict_one(path, self.streams, self.settings, self.options,
                                        self.device, cam=True)  # fmt: skip
            folder = self.new_folder()
            files, timeline, cam = self.write(folder, path.name, result, drawn)
        except (UserError, OSError) as err:  # a bad video, or a full disk: one line
            message = one_line(err).replace(str(path), path.name)  # not the server's upload path
            print(f"error: {message}", file=sys.stderr)
            raise gr.Error(message, print_exception=False) from None
        result["video"] = path.name
        if result.get("warning"):
            gr.Warning(result["warning"].replace(str(path), path.name))
        final = final_column(drawn["whole"])
        headline = (
            f"**{self.names[-1]}: {shown(final, self.classes, self.options.threshold)}**\n\n"
            f"{path.name}: {drawn['video'].num_frames} frames, {result['seconds']:.1f} s, "
            f"{result['windows']} window(s); scored in {time.perf_counter() - start:.1f} s"
        )
        fused = {c: p for c, p in result["top"][self.names[-1]]}
        return headline, fused, self.table(result), timeline, cam, files, result

    def new_folder(self) -> Path:
        """A folder for this result's files; the last result's goes (Gradio has copied them
        into its cache), so a long-running page does not fill the disk."""
        if self.last is not None:
            shutil.rmtree(self.last, ignore_errors=True)
        self.last = Path(tempfile.mkdtemp(dir=self.folder.name))
        return self.last

    def table(self, result: dict):
        """Rank, then a 'Class 12.3%' cell per stream (and fused), as predict prints them."""
        import pandas as pd

        rows = [
            [k + 1, *(f"{c} {100 * p:.1f}%" for c, p in (result["top"][n][k] for n in self.names))]
            for k in range(self.top)
        ]
        return pd.DataFrame(rows, columns=["#", *self.names])

    def write(self, folder: Path, name: str, result: dict, drawn: dict) -> tuple:
        """predict's CSV (and --timeline's files for more than one window) and --cam's strip."""
        from engine.predict_batch import csv_cells, csv_header
        from utils.result_files import ResultFiles
        from utils.timeline import write_timeline

        labelled = self.options.threshold is not None
        files = [folder / "predictions.csv"]
        out = ResultFiles(files[0], None, csv_header(self.names, self.top, labelled))
        out.add(csv_cells({**result, "video": name}, self.names, self.top, labelled), result)
        timeline = None
        if len(drawn["video"].windows) > 1:
            written = write_timeline(folder / "timeline.csv", drawn["video"].times(),
                                     drawn["windows"], self.classes, self.top,
                                     self.options.threshold)  # fmt: skip
            timeline = str(written[1])
            files += [written[0], written[2]]
        best = int(final_column(drawn["whole"]).argmax())
        cam = write_cam(folder / "gradcam.png", self.streams, drawn["cam"], best, self.classes)
        return [str(f) for f in files], timeline, str(cam)


def build_page(classifier: Classifier, examples: list[Path]):
    """The Gradio Blocks: a video in, the label, tables, pictures and files out."""
    import gradio as gr

    streams = ", ".join(f"{n} ({s.arch})" for n, s in classifier.streams.items())
    threshold = classifier.options.threshold
    with gr.Blocks(title="Two-stream action recognition", analytics_enabled=False,
                   delete_cache=(3600, 3600)) as page:  # fmt: skip
        gr.Markdown(
            f"## Two-stream action recognition\n{len(classifier.classes)} classes; streams: "
            f"{streams}" + (f"; below {threshold:g}: unknown" if threshold is not None else "")
        )
        with gr.Row():
            with gr.Column():
                video = gr.Video(label="video: drop a file or record", include_audio=True)
                if examples:
                    gr.Examples([[str(p)] for p in examples], inputs=video, label="examples",
                                example_labels=[p.name for p in examples])  # fmt: skip
            with gr.Column():
                headline = gr.Markdown(elem_id="verdict")
                fused = gr.Label(label=f"{classifier.names[-1]} top-{classifier.top}",
                                 num_top_classes=classifier.top, show_heading=False)  # fmt: skip
                table = gr.Dataframe(label="each stream", interactive=False)
        with gr.Row():
            timeline = gr.Image(label="timeline (a video longer than --window)", type="filepath",
                                interactive=False)  # fmt: skip
            cam = gr.Image(label="Grad-CAM", type="filepath", interactive=False)
        files = gr.File(label="CSV", file_count="multiple", interactive=False)
        with gr.Accordion("predict's --json record", open=False):
            record = gr.JSON()
        outputs = [headline, fused, table, timeline, cam, files, record]
        video.change(classifier.classify, inputs=video, outputs=outputs, api_name=API)
    return page


def start(argv=None, block: bool = True):
    """Load the checkpoints, build the page and serve it; returns the page (its ``local_url``)
    once serving when not ``block``, else serves until Ctrl-C."""
    args = get_args(argv)  # before torch is imported: --help and typos answer at once
    check_video_arguments(args)
    from engine.device import resolve_device
    from engine.inference import collect_videos

    examples = collect_videos(args.examples) if args.examples else []
    device = resolve_device(args.device)
    streams, settings = load_streams(args, device, STREAM_OPTIONS)
    classifier = Classifier(video_options(args), streams, settings, device)
    page = serve(build_page(classifier, examples), args.host, args.port, examples)
    print(f"serving on {page.local_url} (Ctrl-C stops)", flush=True)
    if block:
        page.block_thread()
    return page


def serve(page, host: str, port: int, examples: list[Path]):
    """Launch ``page`` on ``host``:``port`` without blocking; a port in use is a UserError."""
    page.queue(default_concurrency_limit=1)  # one video at a time: the models are shared
    try:
        page.launch(server_name=host, server_port=port or None, prevent_thread_lock=True,
                    quiet=True, share=False, ssr_mode=False, show_error=True,
                    allowed_paths=[str(p) for p in examples])  # the files alone  # fmt: skip
    except OSError as err:
        raise UserError(f"cannot serve on {host}:{port} ({err}); give another --port") from None
    return page


def main(argv=None):
    return start(argv)


if __name__ == "__main__":
    run_cli(main)
