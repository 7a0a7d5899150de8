#!/usr/bin/env python3
"""Convert a local diffusers Stable Diffusion checkpoint folder into the ONNX layout the
diffusion engine loads (the diffusers/Optimum ONNX layout):

    model_index.json
    text_encoder/model.onnx   input_ids (int32) -> last_hidden_state
    unet/model.onnx           sample, timestep (float32 [batch]), encoder_hidden_states
                              -> out_sample   (weights over 1.5 GB go to unet/weights.pb)
    vae_encoder/model.onnx    sample -> latent_parameters (mean and log-variance)
    vae_decoder/model.onnx    latent_sample -> sample
    tokenizer/                vocab.json, merges.txt, tokenizer_config.json, ...
    scheduler/scheduler_config.json
    */config.json             the component configs (VAE scale, scaling factor, ...)
    vae_decoder_tiny/         with --tiny-vae: a TAESD-style decoder (diffusers'
                              AutoencoderTiny), latent_sample -> sample like vae_decoder
    vae_encoder_tiny/         with --tiny-vae: its encoder, sample -> latents (the
                              UNet's latents divided by its scaling_factor, no sampling)
    export.json               what the export did (precision, options), for `models show`

The input folder is any diffusers checkpoint in safetensors (or .bin) with
model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/ -- SD 1.x or 2.x,
inpainting (9 input channels) or not, whatever its widths, depths and VAE scale factor.

LoRAs (the `SubModelList` / `LoraWeight` job parameters) are served by fusing them into the
weights here: `--lora FILE:WEIGHT` (repeatable). `--fp16` converts the weights to float16
for GPUs while keeping float32 inputs and outputs (the engine feeds float32).

Setup (once): python3 -m venv .venv-diffusion &&
    .venv-diffusion/bin/pip install -r tools/diffusion/requirements.txt
`--tiny-vae DIR` also exports a diffusers AutoencoderTiny folder (for SD 1.x/2.x:
madebyollin/taesd) as vae_decoder_tiny/ and vae_encoder_tiny/; the engine decodes with
the first when the model's configuration says `tiny_decoder = "vae_decoder_tiny"`, and
encodes the inpainting image with the second when it says
`tiny_encoder = "vae_encoder_tiny"`. TAESD decodes the UNet's latents as they are and
encodes straight to them (its scaling_factor is 1.0, recorded in its config.json).

`--ort-optimize cpu|gpu|none` (default `cpu` for a float32 export, none with --fp16)
runs ONNX Runtime's own Stable Diffusion graph optimizer
(`onnxruntime.transformers`, model type `unet`) over the UNet: each attention becomes
one `MultiHeadAttention` node, and LayerNorm (with its residual add) is fused; what was
fused is recorded in export.json. (The optimizer makes self-attention one `Attention`
node with packed weights; for `cpu` that node is rewritten as Q, K and V MatMuls and a
`MultiHeadAttention` node, whose CPU kernel is blockwise flash attention, where
`Attention`'s holds the whole score matrix: see self_attention_as_mha.)
Measured on the full-size SD-1.5 UNet on the CPU (README, Benchmarks): a 512x512 step
holds about 3 GB less (the unfused graph keeps the attention score tensors), and a step
took 0.62x to 1.0x the plain graph's time in the runs there. Its fused nodes are ONNX
Runtime's own: for the OpenVINO provider export with `none`. `gpu` adds the CUDA-only
fusions ONNX Runtime's published GPU figures use (GroupNorm, SkipGroupNorm,
BiasSplitGelu, BiasAdd, NHWC convolutions, packed QKV with --fp16); those kernels do not
exist on the CPU, so a `gpu` export runs only on CUDA. The networks' inputs and outputs are unchanged.

`--quantize int8` (after --ort-optimize when both are given) replaces the UNet's matrix
multiplications (linear layers and, on an optimized graph, the fused attention's
projections) with ONNX Runtime's dynamic int8 quantization: int8 weights, activations
quantized per call. Convolutions stay float32 (ONNX Runtime's int8 convolution is slower
than its float one on the CPU). One UNet step on a fixed random input is run before and
after; the relative error of the output (|q - f| / |f|, L2) is printed and recorded in
export.json as `quantize_rel_error`, so the cost in accuracy is known before the model is
used.

Usage: .venv-diffusion/bin/python tools/diffusion/export_onnx.py CHECKPOINT OUT
       [--lora a.safetensors:0.8 ...] [--fp16] [--opset 17] [--tiny-vae TAESD_DIR]
       [--ort-optimize cpu|gpu|none] [--quantize int8]
       OUT --tiny-vae TAESD_DIR --tiny-only    (add the tiny decoder and encoder to an existing export)
       OUT --ort-optimize cpu --optimize-only  (optimize an existing export in place)
       OUT --quantize int8 --optimize-only     (quantize an existing export in place)
"""

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import torch

EXTERNAL_DATA_LIMIT = 1_500_000_000


class TextEncoder(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids):
        return self.model(input_ids.long())[0]


class Unet(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, sample, timestep, encoder_hidden_states):
        return self.model(sample, timestep, encoder_hidden_states, return_dict=False)[0]


class VaeEncoder(torch.nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, sample):
        # The distribution's parameters, so the engine samples with the seed's generator.
        return self.vae.encode(sample).latent_dist.parameters


class VaeDecoder(torch.nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, latent_sample):
        return self.vae.decode(latent_sample).sample


class TinyVaeHalf(torch.nn.Module):
    """One half of a diffusers AutoencoderTiny. `decode`: `latent_sample` are the UNet's
    latents divided by its scaling_factor (1.0 for TAESD); the output is in [-1, 1] like
    AutoencoderKL's. `encode`: an image in [-1, 1] to latents that, times the
    scaling_factor, are the UNet's; deterministic: there is no distribution to sample, and
    diffusers' pipelines draw nothing from the generator for it."""

    def __init__(self, vae, half: str):
        super().__init__()
        self.vae = vae
        self.half = half

    def forward(self, x):
        return self.vae.decode(x).sample if self.half == "decode" else self.vae.encode(x).latents


def export_tiny_half(vae, out: Path, half: str, opset=17, fp16=False):
    """Exports an AutoencoderTiny's decoder (`half="decode"`) as OUT/vae_decoder_tiny/ or
    its encoder (`"encode"`) as OUT/vae_encoder_tiny/: model.onnx and the AutoencoderTiny
    config.json."""
    out = Path(out)
    vae.eval()
    image_axes = {0: "batch", 2: "height", 3: "width"}
    latent_axes = {0: "batch", 2: "height_latent", 3: "width_latent"}
    if half == "decode":
        folder, example = out / "vae_decoder_tiny", torch.randn(1, vae.config.latent_channels, 8, 8)
        axes = {"latent_sample": latent_axes, "sample": image_axes}
    else:
        folder, example = out / "vae_encoder_tiny", torch.rand(1, 3, 64, 64) * 2 - 1
        axes = {"sample": image_axes, "latents": latent_axes}
    (name_in, name_out) = axes
    export_one(TinyVaeHalf(vae, half), (example,), folder / "model.onnx", [name_in], [name_out], axes, opset, fp16)
    vae.save_config(folder)
    return folder


def export_tiny_vae(vae, out: Path, opset=17, fp16=False):
    """Both halves of an AutoencoderTiny, and export.json's record of them."""
    folders = [export_tiny_half(vae, out, half, opset, fp16) for half in ("decode", "encode")]
    write_export_info(out, tiny_decoder="vae_decoder_tiny", tiny_encoder="vae_encoder_tiny")
    return folders


def write_export_info(out: Path, **fields):
    """export.json: what produced the folder, merged with what is there already."""
    path = Path(out) / "export.json"
    info = json.loads(path.read_text()) if path.exists() else {}
    info.update({k: v for k, v in fields.items() if v is not None})
    path.write_text(json.dumps(info, indent=2) + "\n")


def ort_optimize(out: Path, target: str):
    """Runs ONNX Runtime's Stable Diffusion optimizer over OUT/unet/model.onnx in place,
    with the fusions that have kernels on `target` (`cpu` or `gpu`); see the module doc."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    path = Path(out) / "unet" / "model.onnx"
    options = FusionOptions("unet")
    if target == "cpu":
        # CUDA-only contrib kernels: without these the graph keeps plain ONNX ops there.
        options.enable_nhwc_conv = False
        options.enable_group_norm = False
        options.enable_skip_group_norm = False
        options.enable_bias_splitgelu = False
        options.enable_bias_add = False
        options.enable_packed_qkv = False
        options.enable_packed_kv = False
    fp16 = json.loads((Path(out) / "export.json").read_text()).get("precision") == "fp16" \
        if (Path(out) / "export.json").exists() else False
    options.enable_packed_qkv = options.enable_packed_qkv and fp16
    options.enable_packed_kv = options.enable_packed_kv and fp16
    model = optimize_model(str(path), model_type="unet", num_heads=0, hidden_size=0, opt_level=0,
                           optimization_options=options, use_gpu=target == "gpu")
    fused = {k: v for k, v in model.get_fused_operator_statistics().items() if v}
    if target == "cpu":
        unfused = self_attention_as_mha(model.model)
        fused["Attention"] = fused.get("Attention", 0) - unfused
        fused["MultiHeadAttention"] = fused.get("MultiHeadAttention", 0) + unfused
        fused = {k: v for k, v in fused.items() if v}
    # The optimized graph holds its weights in memory: the old files can go before it is
    # written (a small graph must not leave a stale weights.pb beside it).
    for f in path.parent.iterdir():
        if f.name.endswith(".onnx") or f.name == "weights.pb":
            f.unlink()
    save(model.model, path)
    write_export_info(out, ort_optimize=target, ort_fused=fused)
    return fused


def self_attention_as_mha(model) -> int:
    """Rewrites each fused self-attention `Attention` node (input, packed QKV weights, bias)
    as three MatMuls (Q, K, V) and a `MultiHeadAttention` node, in place; returns how many.
    On the CPU, ONNX Runtime's `Attention` kernel materialises the whole score matrix (at
    512x512, batch 2: 2 x 8 heads x 4096 x 4096 floats, 1 GiB), while `MultiHeadAttention`
    with separate Q, K and V runs its flash-attention kernel in small blocks. Measured on
    one SD-1.5 self-attention (batch 2, 4096 tokens, width 320, 2 cores): 1249 MiB and 0.47
    s as `Attention`, 173 MiB and 0.33 s as this, outputs within 1e-7."""
    import numpy as np
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    nodes, rewritten = [], 0
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        inputs = [i for i in node.input]
        plain = (node.op_type == "Attention" and node.domain == "com.microsoft" and len(inputs) >= 2
                 and all(not i for i in inputs[3:]) and inputs[1] in inits
                 and (len(inputs) < 3 or not inputs[2] or inputs[2] in inits)
                 and set(attrs) <= {"num_heads", "scale"})
        if not plain:
            nodes.append(node)
            continue
        weights = numpy_helper.to_array(inits[inputs[1]])
        hidden = weights.shape[1] // 3
        bias = numpy_helper.to_array(inits[inputs[2]]) if len(inputs) > 2 and inputs[2] else None
        qkv = []
        for k, part in enumerate("qkv"):
            name = f"{node.name}_{part}"
            graph.initializer.append(numpy_helper.from_array(
                np.ascontiguousarray(weights[:, k * hidden:(k + 1) * hidden]), f"{name}_weight"))
            nodes.append(helper.make_node("MatMul", [inputs[0], f"{name}_weight"], [f"{name}_out"], name=f"{name}_MatMul"))
            out = f"{name}_out"
            if bias is not None and np.any(bias[k * hidden:(k + 1) * hidden]):
                graph.initializer.append(numpy_helper.from_array(bias[k * hidden:(k + 1) * hidden], f"{name}_bias"))
                nodes.append(helper.make_node("Add", [out, f"{name}_bias"], [f"{name}_biased"], name=f"{name}_Add"))
                out = f"{name}_biased"
            qkv.append(out)
        nodes.append(helper.make_node("MultiHeadAttention", qkv, [node.output[0]], name=f"{node.name}_MHA",
                                      domain="com.microsoft", **attrs))
        rewritten += 1
    if rewritten:
        used = {i for n in nodes for i in n.input}
        del graph.node[:]
        graph.node.extend(nodes)
        keep = [i for i in graph.initializer if i.name in used]
        del graph.initializer[:]
        graph.initializer.extend(keep)
    return rewritten


def unet_step_output(path: Path, inputs: dict):
    """One run of the UNet at `path` on the CPU: its first output."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, inputs)[0]


def unet_probe(out: Path):
    """A fixed random input for one UNet step: batch 1 at the UNet's own sample size."""
    import numpy as np

    config = json.loads((Path(out) / "unet" / "config.json").read_text())
    size = int(config.get("sample_size", 64))
    rng = np.random.default_rng(0)
    return {
        "sample": rng.standard_normal((1, int(config["in_channels"]), size, size)).astype("float32"),
        "timestep": np.array([500.0], dtype="float32"),
        "encoder_hidden_states": rng.standard_normal(
            (1, 77, int(config["cross_attention_dim"]))).astype("float32"),
    }


def quantize(out: Path, kind: str):
    """Dynamic int8 quantization of OUT/unet's matrix multiplications, in place; returns the
    relative error of one step against the float graph (see the module doc)."""
    import numpy as np
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    assert kind == "int8", kind
    path = Path(out) / "unet" / "model.onnx"
    probe = unet_probe(out)
    before = unet_step_output(path, probe)
    tmp = path.parent / "quantized"
    tmp.mkdir(exist_ok=True)
    model = onnx.load(str(path), load_external_data=False)
    domains = {node.domain for node in model.graph.node if node.domain}
    if domains - {o.domain for o in model.opset_import}:
        # ONNX Runtime's optimizer writes its fused nodes (com.microsoft) without declaring
        # the domain; ONNX Runtime tolerates that, the quantizer's shape inference does not.
        for domain in domains - {o.domain for o in model.opset_import}:
            model.opset_import.append(onnx.helper.make_opsetid(domain, 1))
        onnx.save_model(model, str(path))  # the graph only: the weights file stays as it is
    del model
    quantize_dynamic(str(path), str(tmp / "model.onnx"), op_types_to_quantize=["MatMul", "Attention"],
                     weight_type=QuantType.QInt8, use_external_data_format=True,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    model = onnx.load(str(tmp / "model.onnx"), load_external_data=True)
    shutil.rmtree(tmp)
    for f in path.parent.iterdir():
        if f.name.endswith(".onnx") or f.name == "weights.pb":
            f.unlink()
    save(model, path)
    after = unet_step_output(path, probe)
    error = float(np.linalg.norm(after - before) / max(np.linalg.norm(before), 1e-12))
    write_export_info(out, quantize=kind, quantize_rel_error=error)
    return error


def load_pipeline(checkpoint: Path, loras):
    """The checkpoint's components, with LoRAs fused when given."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    unet = UNet2DConditionModel.from_pretrained(checkpoint / "unet")
    vae = AutoencoderKL.from_pretrained(checkpoint / "vae")
    text_encoder = CLIPTextModel.from_pretrained(checkpoint / "text_encoder")
    if loras:
        from diffusers import StableDiffusionPipeline

        pipe = StableDiffusionPipeline.from_pretrained(
            checkpoint, unet=unet, vae=vae, text_encoder=text_encoder,
            safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        names, weights = [], []
        for i, (path, weight) in enumerate(loras):
            name = f"lora{i}"
            pipe.load_lora_weights(str(path), adapter_name=name)
            names.append(name)
            weights.append(weight)
        pipe.set_adapters(names, adapter_weights=weights)
        pipe.fuse_lora(adapter_names=names, lora_scale=1.0)
        pipe.unload_lora_weights()
        unet, text_encoder = pipe.unet, pipe.text_encoder
    for m in (unet, vae, text_encoder):
        m.eval()
    return unet, vae, text_encoder


def export_one(module, args, path: Path, inputs, outputs, axes, opset, fp16):
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.onnx")
    with torch.no_grad():
        torch.onnx.export(module, args, str(tmp), input_names=inputs, output_names=outputs,
                          dynamic_axes=axes, opset_version=opset, do_constant_folding=True,
                          dynamo=False)
    model = onnx.load(str(tmp), load_external_data=True)
    if fp16:
        from onnxconverter_common import float16

        model = float16.convert_float_to_float16(model, keep_io_types=True)
    for f in tmp.parent.iterdir():
        if f.name != path.name and f.name != "config.json":
            f.unlink()
    save(model, path)


def save(model, path: Path):
    """Writes a network, its weights beside it in weights.pb when they are too large for
    one protobuf file."""
    import onnx

    size = sum(t.ByteSize() for t in model.graph.initializer)
    if size > EXTERNAL_DATA_LIMIT:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location="weights.pb", convert_attribute=False)
    else:
        onnx.save_model(model, str(path))


def export(checkpoint: Path, out: Path, loras=(), fp16=False, opset=17):
    checkpoint, out = Path(checkpoint), Path(out)
    for part in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        if not (checkpoint / part).is_dir():
            sys.exit(f"{checkpoint} is not a diffusers checkpoint folder: {part}/ is missing")
    unet, vae, text_encoder = load_pipeline(checkpoint, loras)
    out.mkdir(parents=True, exist_ok=True)
    seq = 77
    tok_config = checkpoint / "tokenizer" / "tokenizer_config.json"
    if tok_config.exists():
        seq = min(int(json.loads(tok_config.read_text()).get("model_max_length", 77)), 77)

    ids = torch.zeros((1, seq), dtype=torch.int32)
    export_one(TextEncoder(text_encoder), (ids,), out / "text_encoder" / "model.onnx",
               ["input_ids"], ["last_hidden_state"],
               {"input_ids": {0: "batch"}, "last_hidden_state": {0: "batch"}}, opset, fp16)

    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    c_in = unet.config.in_channels
    hidden = text_encoder.config.hidden_size
    sample = torch.randn(2, c_in, 8, 8)
    timestep = torch.tensor([500.0, 500.0])
    states = torch.randn(2, seq, unet.config.cross_attention_dim or hidden)
    export_one(Unet(unet), (sample, timestep, states), out / "unet" / "model.onnx",
               ["sample", "timestep", "encoder_hidden_states"], ["out_sample"],
               {"sample": {0: "batch", 2: "height", 3: "width"}, "timestep": {0: "batch"},
                "encoder_hidden_states": {0: "batch"}, "out_sample": {0: "batch", 2: "height", 3: "width"}},
               opset, fp16)

    image = torch.randn(1, 3, 8 * scale, 8 * scale)
    export_one(VaeEncoder(vae), (image,), out / "vae_encoder" / "model.onnx",
               ["sample"], ["latent_parameters"],
               {"sample": {0: "batch", 2: "height", 3: "width"},
                "latent_parameters": {0: "batch", 2: "height_latent", 3: "width_latent"}}, opset, fp16)
    latent = torch.randn(1, vae.config.latent_channels, 8, 8)
    export_one(VaeDecoder(vae), (latent,), out / "vae_decoder" / "model.onnx",
               ["latent_sample"], ["sample"],
               {"latent_sample": {0: "batch", 2: "height_latent", 3: "width_latent"},
                "sample": {0: "batch", 2: "height", 3: "width"}}, opset, fp16)

    unet.save_config(out / "unet")
    vae.save_config(out / "vae_encoder")
    vae.save_config(out / "vae_decoder")
    text_encoder.config.save_pretrained(out / "text_encoder")
    if (out / "tokenizer").exists():
        shutil.rmtree(out / "tokenizer")
    shutil.copytree(checkpoint / "tokenizer", out / "tokenizer")
    (out / "scheduler").mkdir(exist_ok=True)
    shutil.copy(checkpoint / "scheduler" / "scheduler_config.json", out / "scheduler" / "scheduler_config.json")
    index = {
        "_class_name": "OnnxStableDiffusionInpaintPipeline" if c_in != vae.config.latent_channels
        else "OnnxStableDiffusionPipeline",
        "_diffusers_version": __import__("diffusers").__version__,
        "text_encoder": ["onnxruntime", "OnnxRuntimeModel"],
        "unet": ["onnxruntime", "OnnxRuntimeModel"],
        "vae_encoder": ["onnxruntime", "OnnxRuntimeModel"],
        "vae_decoder": ["onnxruntime", "OnnxRuntimeModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", json.loads((checkpoint / "scheduler" / "scheduler_config.json").read_text()).get("_class_name", "PNDMScheduler")],
        "safety_checker": [None, None],
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
    }
    (out / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    write_export_info(out, precision="fp16" if fp16 else "fp32", opset=opset,
                      loras=[f"{p.name}:{w}" for p, w in loras] or None)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("out", type=Path, nargs="?")
    parser.add_argument("--lora", action="append", default=[], help="FILE:WEIGHT (repeatable)")
    parser.add_argument("--fp16", action="store_true")
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--tiny-vae", type=Path, help="an AutoencoderTiny folder to export as vae_decoder_tiny/ and vae_encoder_tiny/")
    parser.add_argument("--tiny-only", action="store_true",
                        help="only add --tiny-vae to an existing export (given as the one folder)")
    parser.add_argument("--ort-optimize", choices=["cpu", "gpu", "none"], default=None,
                        help="run ONNX Runtime's Stable Diffusion optimizer over the UNet for this "
                             "target (a full export: cpu unless --fp16 or none is given)")
    parser.add_argument("--quantize", choices=["int8"],
                        help="dynamic int8 quantization of the UNet's matrix multiplications")
    parser.add_argument("--optimize-only", action="store_true",
                        help="only run --ort-optimize / --quantize over an existing export (given as the one folder)")
    args = parser.parse_args()
    if args.ort_optimize == "none":
        args.ort_optimize = None
    elif args.ort_optimize is None and not (args.optimize_only or args.tiny_only or args.fp16):
        # A full export is optimized for the CPU unless told otherwise: measured on SD 1.5
        # (README, Benchmarks), one 512x512 inpaint then holds about 3 GB less, and the
        # fused graph runs on CUDA too. fp16 exports are for GPUs: `gpu` fits them.
        args.ort_optimize = "cpu"
    if args.optimize_only:
        if not (args.ort_optimize or args.quantize):
            sys.exit("--optimize-only needs --ort-optimize or --quantize")
        if args.ort_optimize:
            print(f"fused: {ort_optimize(args.checkpoint, args.ort_optimize)}")
        if args.quantize:
            print(f"quantized: one UNet step's relative error {quantize(args.checkpoint, args.quantize):.2e}")
        return
    if args.tiny_vae:
        from diffusers import AutoencoderTiny

        tiny = AutoencoderTiny.from_pretrained(args.tiny_vae)
    if args.tiny_only:
        if not args.tiny_vae:
            sys.exit("--tiny-only needs --tiny-vae")
        out = args.out or args.checkpoint
        folders = export_tiny_vae(tiny, out, args.opset, args.fp16)
        print(f"exported {args.tiny_vae} to {', '.join(str(f) for f in folders)}")
        return
    if args.out is None:
        parser.error("OUT is required")
    loras = []
    for spec in args.lora:
        path, _, weight = spec.rpartition(":")
        if not path:
            path, weight = spec, "1.0"
        loras.append((Path(path), float(weight)))
    export(args.checkpoint, args.out, loras, args.fp16, args.opset)
    if args.tiny_vae:
        export_tiny_vae(tiny, args.out, args.opset, args.fp16)
    if args.ort_optimize:
        print(f"fused: {ort_optimize(args.out, args.ort_optimize)}")
    if args.quantize:
        print(f"quantized: one UNet step's relative error {quantize(args.out, args.quantize):.2e}")
    print(f"exported {args.checkpoint} to {args.out}")


if __name__ == "__main__":
    torch.manual_seed(0)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
