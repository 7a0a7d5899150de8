"""A client generated from the native OpenAPI document, used end to end.

    client_roundtrip.py --document native.json --base-url URL --key KEY \
        --image CUTOUT.png --out RESULT [--work DIR]

Generates a Python client from DOCUMENT with openapi-python-client (into DIR, default a
temporary folder), then with nothing but that client: submits IMAGE as `image_base64` to
`POST /v1/backgrounds` on the `studio` engine, polls `GET /v1/tasks/{id}` until the task
has ended, and downloads its first result through `GET /files/{key}` (the operation of
the signed URL the task view gives). Writes the result's bytes to OUT and prints one JSON
line: the task id, its final state and the result's reported size.

Exits non-zero when generation fails, an operation is missing from the generated client,
or the task does not succeed. Run by crates/backdrop-server/tests/openapi.rs.
"""

import argparse
import base64
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

PACKAGE = "backdrop_client"


def generate(document, work):
    """Generates the client package into WORK/PACKAGE and imports it."""
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    out = subprocess.run(
        [
            str(bin_dir / "openapi-python-client"),
            "generate",
            "--path",
            document,
            "--meta",
            "none",
            "--output-path",
            str(Path(work) / PACKAGE),
            "--overwrite",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        sys.exit(f"openapi-python-client failed:\n{out.stdout}\n{out.stderr}")
    sys.path.insert(0, str(work))
    return importlib.import_module(PACKAGE)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--document", required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--image", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--work")
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args()

    work = args.work or tempfile.mkdtemp(prefix="backdrop-client-")
    client_package = generate(args.document, work)
    submit_background = importlib.import_module(f"{PACKAGE}.api.tasks.submit_background")
    get_task = importlib.import_module(f"{PACKAGE}.api.tasks.get_task")
    download_file = importlib.import_module(f"{PACKAGE}.api.files.download_file")
    models = importlib.import_module(f"{PACKAGE}.models")

    client = client_package.AuthenticatedClient(base_url=args.base_url, token=args.key)
    image = base64.b64encode(Path(args.image).read_bytes()).decode("ascii")
    request = models.BackgroundRequest(image_base64=image, engine="studio", scene="warm-paper", seed=7)
    submitted = submit_background.sync_detailed(client=client, body=request)
    if submitted.status_code != 202 or not isinstance(submitted.parsed, models.Accepted):
        sys.exit(f"submit answered {submitted.status_code}: {submitted.content!r}")
    task_id = submitted.parsed.id

    deadline = time.monotonic() + args.timeout
    while True:
        polled = get_task.sync_detailed(id=task_id, client=client)
        task = polled.parsed
        if polled.status_code != 200 or not isinstance(task, models.TaskView):
            sys.exit(f"poll answered {polled.status_code}: {polled.content!r}")
        if task.state in ("succeeded", "failed", "canceled"):
            break
        if time.monotonic() > deadline:
            sys.exit(f"task {task_id} still {task.state} after {args.timeout} s")
        time.sleep(0.1)
    if task.state != "succeeded":
        sys.exit(f"task {task_id} ended {task.state}: {task.error}")

    # The signed URL, taken apart into the download operation's parameters.
    url = urlparse(task.images[0].url)
    query = parse_qs(url.query)
    key = unquote(url.path.removeprefix("/files/"))
    downloaded = download_file.sync_detailed(key, client=client, exp=int(query["exp"][0]), sig=query["sig"][0])
    if downloaded.status_code != 200:
        sys.exit(f"download answered {downloaded.status_code}: {downloaded.content[:200]!r}")
    Path(args.out).write_bytes(downloaded.content)
    print(json.dumps({"id": task_id, "state": task.state, "width": task.width, "height": task.height,
                      "bytes": len(downloaded.content), "content_type": downloaded.headers.get("content-type")}))


if __name__ == "__main__":
    main()
