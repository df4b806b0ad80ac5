"""Run by tests/test_inference_protocol.py in a venv of its own (requirements/client.txt), not imported:
Triton's HTTP client (tritonclient[http]) against the service. Prints one JSON object of what it saw.

    python triton_client.py URL IMAGE...
"""

import json
import math
import sys
from pathlib import Path

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

MODEL = "muffin-v-chihuahua"
OUTPUTS = ["verdict", "probability", "evidence", "imagenet_labels", "imagenet_probabilities", "reason"]


def text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def infer(client, photos, outputs=None):
    """One request with every photo; the answer per photo, and the names of the outputs it holds."""
    image = httpclient.InferInput("image", [len(photos)], "BYTES")
    image.set_data_from_numpy(np.array(photos, dtype=np.object_))  # binary, the client's default
    result = client.infer(MODEL, [image], outputs=outputs)
    names = [output["name"] for output in result.get_response()["outputs"]]
    array = {name: result.as_numpy(name) for name in names}
    answers = []
    for index in range(len(photos)):
        answer = {}
        for name in names:
            value = array[name][index]
            if name in ("verdict", "reason"):
                answer[name] = text(value)
            elif name == "imagenet_labels":
                answer[name] = [text(label) for label in value]
            elif name == "imagenet_probabilities":
                answer[name] = [float(p) for p in value]
            else:
                answer[name] = None if math.isnan(float(value)) else float(value)
                answer[f"{name}_dtype"] = str(array[name].dtype)
        answers.append(answer)
    binary = {
        output["name"]: "binary_data_size" in output.get("parameters", {})
        for output in result.get_response()["outputs"]
    }
    return {"answers": answers, "names": names, "binary": binary}


def main():
    url, *paths = sys.argv[1:]
    photos = [Path(path).read_bytes() for path in paths]
    client = httpclient.InferenceServerClient(url.removeprefix("http://"))
    seen = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready(MODEL),
        "server_metadata": client.get_server_metadata(),
        "model_metadata": client.get_model_metadata(MODEL),
        # No outputs named: the client asks for all of them as binary.
        "binary": infer(client, photos),
        "json": infer(client, photos, [httpclient.InferRequestedOutput(name, binary_data=False) for name in OUTPUTS]),
        "some": infer(
            client,
            photos[:2],
            [
                httpclient.InferRequestedOutput("verdict", binary_data=True),
                httpclient.InferRequestedOutput("probability", binary_data=False),
            ],
        ),
    }
    try:
        infer(client, [photos[0], b"this is not an image"])
    except InferenceServerException as error:
        seen["bad_image"] = {"status": error.status(), "message": error.message()}
    try:
        client.get_model_metadata("another-model")
    except InferenceServerException as error:
        seen["unknown_model"] = {"status": error.status(), "message": error.message()}
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
