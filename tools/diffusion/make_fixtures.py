#!/usr/bin/env python3
"""Test fixtures of the diffusion engine: tiny random Stable Diffusion models of the real
architecture families, exported to the ONNX layout, and reference vectors and outputs
recorded from PyTorch, transformers and diffusers.

Subcommands (run from the repository root with the tools venv, see requirements.txt):
  models      tiny checkpoints (diffusers format) -> export_onnx.py -> fixtures/models/,
              source images and the case list (cases.json)
  tiny-vae    a tiny random TAESD-style VAE (diffusers' AutoencoderTiny), exported
              beside tiny-inpaint's networks as vae_decoder_tiny/ and vae_encoder_tiny/
              (the engine's optional tiny decoder and encoder)
  ort-unet    tiny-inpaint's UNet through ONNX Runtime's Stable Diffusion optimizer for
              the CPU (export_onnx.py --ort-optimize cpu), as tiny-inpaint/unet-ort-cpu/
              (the parity test swaps it in and compares with the same references)
  int8-unet   tiny-inpaint's UNet with its matrix multiplications quantized to int8
              (export_onnx.py --quantize int8), as tiny-inpaint/unet-int8/ (the parity
              test swaps it in and bounds its distance from the same references)
  cases       rewrite cases.json only (the list of parity cases below)
  vectors     recorded vectors: torch.randn (rng.json), CLIPTokenizer ids
              (tokenizer.json), scheduler timesteps and steps (schedulers.json)
  references  diffusers' StableDiffusionInpaintPipeline on the same ONNX files (run
              through ONNX Runtime) for every case, from the prepared inputs the Rust
              engine writes (`cargo test -p backdrop-diffusion --test parity --
              --ignored write_prepared_inputs`): final images (PNG) and latents (.f32);
              `references NAME...` redoes only the named cases

The CLIP vocabulary cannot be downloaded here, so `models` learns a small CLIP-style BPE
vocabulary (the 512 byte symbols, a few hundred merges, the two special tokens) that
transformers' CLIPTokenizer loads like the real one.
"""

import collections
import json
import math
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "crates" / "backdrop-diffusion" / "tests" / "fixtures"
sys.path.insert(0, str(Path(__file__).resolve().parent))

CORPUS = """
a photo of a product on a wooden table with soft natural light and a white wall behind
studio photography of a bottle on marble with warm sunlight and long shadows beach sand
sea waves ocean blue sky clouds summer garden flowers green leaves plants kitchen counter
minimal clean background gradient pastel pink orange yellow purple red black white grey
concrete stone brick texture paper fabric linen silk velvet leather metal glass ceramic
city street night neon lights bokeh blurry depth of field high quality detailed sharp
professional commercial advertising cosmetics perfume watch shoe bag jewelry ring phone
forest mountain snow winter autumn spring lake river sunset sunrise golden hour cozy room
sofa interior design modern luxury elegant simple podium pedestal platform cylinder cube
low quality bad blurry ugly deformed watermark text logo cropped worst lowres jpeg noise
"""


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def learn_vocab(out: Path, merges_wanted=400, pad_token="<|endoftext|>"):
    """A CLIP-style vocabulary: byte symbols, symbols + </w>, learned merges, specials."""
    byte_encoder = bytes_to_unicode()
    words = collections.Counter()
    for word in CORPUS.lower().split():
        symbols = tuple(byte_encoder[b] for b in word.encode("utf-8"))
        words[symbols[:-1] + (symbols[-1] + "</w>",)] += 1
    merges = []
    for _ in range(merges_wanted):
        pairs = collections.Counter()
        for word, count in words.items():
            for a, b in zip(word, word[1:]):
                pairs[(a, b)] += count
        if not pairs:
            break
        best = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))[0]
        merges.append(best)
        merged = {}
        for word, count in words.items():
            new, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    new.append(word[i] + word[i + 1])
                    i += 2
                else:
                    new.append(word[i])
                    i += 1
            merged[tuple(new)] = count
        words = merged
    vocab = list(byte_encoder.values())
    vocab += [v + "</w>" for v in vocab]
    for a, b in merges:
        if a + b not in vocab:
            vocab.append(a + b)
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False))
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n")
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True,
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
        "pad_token": pad_token, "errors": "replace"}, indent=2))
    (out / "special_tokens_map.json").write_text(json.dumps({
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
        "pad_token": pad_token}, indent=2))
    return len(vocab)


SD1_SCHEDULER = {
    "_class_name": "PNDMScheduler", "beta_start": 0.00085, "beta_end": 0.012,
    "beta_schedule": "scaled_linear", "num_train_timesteps": 1000, "set_alpha_to_one": False,
    "skip_prk_steps": True, "steps_offset": 1, "clip_sample": False, "trained_betas": None,
}
SD2_SCHEDULER = {
    "_class_name": "DDIMScheduler", "beta_start": 0.00085, "beta_end": 0.012,
    "beta_schedule": "scaled_linear", "num_train_timesteps": 1000, "set_alpha_to_one": False,
    "steps_offset": 1, "clip_sample": False, "prediction_type": "v_prediction",
    "timestep_spacing": "leading",
}

MODELS = {
    # SD 1.x inpainting family: 9-channel UNet, epsilon, pad with the end token.
    "tiny-inpaint": dict(in_channels=9, hidden=32, scheduler=SD1_SCHEDULER, pad="<|endoftext|>"),
    # SD 2.x family: ordinary 4-channel UNet, v-prediction, pad with "!".
    "tiny-plain": dict(in_channels=4, hidden=48, scheduler=SD2_SCHEDULER, pad="!"),
}


def make_checkpoint(folder: Path, spec, seed):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    vocab_size = learn_vocab(folder / "tokenizer", pad_token=spec["pad"])
    text = CLIPTextModel(CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=spec["hidden"], intermediate_size=2 * spec["hidden"],
        num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77,
        bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1,
        hidden_act="quick_gelu"))
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=spec["in_channels"], out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=spec["hidden"],
        attention_head_dim=4, norm_num_groups=8)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=8, layers_per_block=1,
        block_out_channels=(16, 16, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
    # Random weights with enough spread that every path shapes the output.
    with torch.no_grad():
        for module in (unet, vae):
            for p in module.parameters():
                p.add_(torch.randn_like(p) * 0.02)
    text.save_pretrained(folder / "text_encoder")
    unet.save_pretrained(folder / "unet")
    vae.save_pretrained(folder / "vae")
    (folder / "scheduler").mkdir(parents=True, exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(spec["scheduler"], indent=2))
    (folder / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionInpaintPipeline",
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", spec["scheduler"]["_class_name"]],
        "safety_checker": [None, None], "feature_extractor": [None, None]}, indent=2))


def source_images():
    from PIL import Image

    # A cut-out whose size is not a multiple of 8: a soft-edged ellipse on transparency.
    w, h = 60, 52
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d = ((xx - 30) / 16) ** 2 + ((yy - 28) / 18) ** 2
    alpha = np.clip((1.0 - d) * 6.0, 0, 1)
    rgb = np.stack([180 + 60 * (xx / w), 60 + 100 * (yy / h), 90 + 0 * xx], -1)
    cutout = np.concatenate([rgb, alpha[..., None] * 255], -1).round().astype(np.uint8)
    Image.fromarray(cutout, "RGBA").save(FIXTURES / "cutout.png")
    # A photo to expand: gradient sky, ground, a disc.
    w, h = 48, 40
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    sky = np.stack([90 + 40 * yy / h, 140 + 50 * yy / h, 220 + 0 * yy], -1)
    ground = np.stack([70 + 30 * xx / w, 120 + 0 * xx, 60 + 0 * xx], -1)
    photo = np.where((yy > 26)[..., None], ground, sky)
    disc = ((xx - 30) ** 2 + (yy - 14) ** 2) < 36
    photo[disc] = [250, 220, 90]
    Image.fromarray(photo.round().astype(np.uint8), "RGB").save(FIXTURES / "photo.png")
    # A reference background for the strength path.
    w, h = 60, 52
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ref = np.stack([200 - 80 * yy / h, 180 + 40 * xx / w, 150 + 50 * np.sin(xx / 5)], -1)
    Image.fromarray(ref.round().astype(np.uint8), "RGB").save(FIXTURES / "reference.png")


CASES = [
    dict(name="inpaint-bg-dpm", model="tiny-inpaint", kind="background", prompt="a bottle on warm wooden table",
         negative=None, seed=42, n=1, steps=5, guidance=7.5, scheduler="dpm++2m"),
    dict(name="inpaint-bg-euler-neg-n2", model="tiny-inpaint", kind="background", prompt="studio photo, soft light!",
         negative="blurry, low quality", seed=7, n=2, steps=4, guidance=5.0, scheduler="euler-a"),
    dict(name="inpaint-expand-ddim", model="tiny-inpaint", kind="expansion", prompt="a sunny garden",
         negative=None, seed=3, n=1, steps=6, guidance=6.0, scheduler="ddim",
         ratios=dict(up=0.2, down=0.0, left=0.25, right=0.25)),
    dict(name="inpaint-bg-ref-karras", model="tiny-inpaint", kind="background", prompt="marble podium",
         negative="ugly", seed=11, n=1, steps=6, guidance=7.0, scheduler="dpm++2m-karras",
         reference="reference.png", strength=0.6),
    dict(name="plain-bg-karras-n2", model="tiny-plain", kind="background", prompt="pastel gradient backdrop",
         negative="text, watermark", seed=5, n=2, steps=5, guidance=7.5, scheduler="dpm++2m-karras"),
    dict(name="plain-expand-lcm", model="tiny-plain", kind="expansion", prompt="ocean and sky",
         negative=None, seed=9, n=1, steps=4, guidance=1.5, scheduler="lcm",
         ratios=dict(up=0.0, down=0.25, left=0.0, right=0.5)),
    dict(name="plain-bg-euler", model="tiny-plain", kind="background", prompt="concrete wall, city at night",
         negative=None, seed=1234567, n=1, steps=4, guidance=4.0, scheduler="euler-a"),
    # Expansion jobs carry no negative prompt.
    dict(name="plain-expand-ddim-n2", model="tiny-plain", kind="expansion", prompt="forest",
         negative=None, seed=21, n=2, steps=4, guidance=3.0, scheduler="ddim",
         ratios=dict(up=0.25, down=0.25, left=0.0, right=0.0)),
    # LCM's few-step setting: guidance <= 1 skips classifier-free guidance (the UNet runs
    # the prompt's half only); the negative prompt is then unused, as in diffusers.
    dict(name="inpaint-bg-lcm-nocfg-n2", model="tiny-inpaint", kind="background", prompt="soft studio light",
         negative="blurry", seed=13, n=2, steps=4, guidance=1.0, scheduler="lcm"),
    dict(name="plain-bg-ref-lcm-nocfg", model="tiny-plain", kind="background", prompt="ocean and sky",
         negative=None, seed=17, n=1, steps=3, guidance=0.0, scheduler="lcm",
         reference="reference.png", strength=0.7),
    # The tiny decoder (vae_decoder_tiny/, see `tiny-vae`): the KL encoder, the tiny
    # decoder for the final image, with AutoencoderTiny's own latent scaling.
    dict(name="inpaint-bg-lcm-tiny", model="tiny-inpaint-taesd", kind="background", prompt="marble podium",
         negative=None, seed=23, n=1, steps=4, guidance=1.0, scheduler="lcm"),
    dict(name="inpaint-bg-ddim-tiny", model="tiny-inpaint-taesd", kind="background", prompt="a sunny garden",
         negative="dark", seed=29, n=1, steps=3, guidance=5.0, scheduler="ddim"),
    # The tiny encoder too (vae_encoder_tiny/): AutoencoderTiny is the pipeline's VAE, so
    # diffusers encodes with it (deterministic latents, nothing drawn from the generator)
    # and decodes with it. Two images check the generators' streams; the expansion runs
    # below strength 1, so the photo itself is encoded as well as the masked photo.
    dict(name="inpaint-bg-lcm-taesd-enc-n2", model="tiny-inpaint-taesd-enc", kind="background",
         prompt="soft studio light", negative=None, seed=31, n=2, steps=4, guidance=1.0, scheduler="lcm"),
    dict(name="inpaint-expand-ddim-taesd-enc", model="tiny-inpaint-taesd-enc", kind="expansion",
         prompt="a sunny garden", negative=None, seed=37, n=1, steps=4, guidance=4.0, scheduler="ddim",
         ratios=dict(up=0.0, down=0.25, left=0.25, right=0.0)),
    # The KL decoder in tiles of 32 pixels (4 latents), against diffusers' own VAE tiling
    # (`enable_tiling()` with that tile size): a square background and a wide expansion,
    # so full, narrower and shorter tiles all blend.
    dict(name="inpaint-bg-dpm-tiled", model="tiny-inpaint-tiled", kind="background",
         prompt="a bottle on warm wooden table", negative="dark", seed=41, n=1, steps=4, guidance=6.0,
         scheduler="dpm++2m"),
    dict(name="inpaint-expand-euler-tiled-n2", model="tiny-inpaint-tiled", kind="expansion",
         prompt="a sunny garden", negative=None, seed=43, n=2, steps=3, guidance=5.0, scheduler="euler-a",
         ratios=dict(up=0.25, down=0.0, left=0.5, right=0.25)),
]

# Model ids of the cases that are not folders of their own:
# (folder, tiny decoder folder, tiny encoder folder).
MODEL_VARIANTS = {"tiny-inpaint-taesd": ("tiny-inpaint", "vae_decoder_tiny", None),
                  "tiny-inpaint-taesd-enc": ("tiny-inpaint", "vae_decoder_tiny", "vae_encoder_tiny")}
MODEL_VARIANTS["tiny-inpaint-tiled"] = ("tiny-inpaint", None, None)
# Variants whose KL decoder decodes in tiles of this many pixels (`decode_tile`).
DECODE_TILES = {"tiny-inpaint-tiled": 32}
TINY_VAE_SEED = 300


def make_tiny_vae():
    """A tiny random AutoencoderTiny (TAESD's architecture, a few channels), the same
    weights on every call."""
    from diffusers import AutoencoderTiny

    torch.manual_seed(TINY_VAE_SEED)
    vae = AutoencoderTiny(
        in_channels=3, out_channels=3, latent_channels=4,
        encoder_block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1))
    with torch.no_grad():
        for p in vae.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        # Spread the random decoder's output over the image range, centred, so that the
        # pixels vary widely rather than sit near one grey or clamp.
        last = [m for m in vae.decoder.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        last.weight.mul_(6.0)
        last.bias.fill_(0.5)
    return vae.eval()


def cmd_tiny_vae():
    from export_onnx import export_tiny_half

    vae = make_tiny_vae()
    out = FIXTURES / "models" / "tiny-inpaint"
    print("exported", *(export_tiny_half(vae, out, half) for half in ("decode", "encode")))


def cmd_models():
    from export_onnx import export

    FIXTURES.mkdir(parents=True, exist_ok=True)
    for i, (name, spec) in enumerate(MODELS.items()):
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = Path(tmp) / name
            make_checkpoint(checkpoint, spec, seed=100 + i)
            target = FIXTURES / "models" / name
            if target.exists():
                shutil.rmtree(target)
            export(checkpoint, target)
            # Keep the torch checkpoint out of the fixtures; the ONNX files are the model.
    source_images()
    (FIXTURES / "cases.json").write_text(json.dumps(CASES, indent=2) + "\n")


def write_swapped_unet(name: str, transform, record_file: str):
    """tiny-inpaint's UNet through `transform` (given an export folder holding only unet/,
    it returns what to record), written as tiny-inpaint/NAME/ with that record beside it
    in RECORD_FILE; the parity tests swap it in for the UNet."""
    model = FIXTURES / "models" / "tiny-inpaint"
    target = model / name
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(model / "unet", Path(tmp) / "unet")
        record = transform(Path(tmp))
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(Path(tmp) / "unet", target)
        (target / record_file).write_text(json.dumps(record, indent=2) + "\n")
    print("wrote", target, record)


def cmd_ort_unet():
    from export_onnx import ort_optimize

    def optimize(folder: Path):
        fused = ort_optimize(folder, "cpu")
        if not fused.get("MultiHeadAttention") and not fused.get("Attention"):
            sys.exit(f"the optimizer fused no attention in tiny-inpaint's UNet: {fused}")
        return fused

    write_swapped_unet("unet-ort-cpu", optimize, "fused.json")


def cmd_int8_unet():
    from export_onnx import quantize

    write_swapped_unet("unet-int8", lambda folder: {"rel_error": quantize(folder, "int8")}, "quantize.json")


# ----- recorded vectors -------------------------------------------------------------------

TOKENIZER_PROMPTS = [
    "a photo of a bottle on a wooden table",
    "Studio photography, soft-light!!! (high quality)... 50% off: $19.99",
    "Café crème brûlée naïve façade",
    "日本の庭園 and a 한국어 sign",
    "a cat 🐱 with 👍🏽 and the 👨‍👩‍👧 family ✨",
    "  multiple   spaces\tand\nnewlines  ",
    "it's what we'll do, they've said i'm sure you'd",
    " ".join(["beautiful luxury product photography on marble"] * 20),
    "",
]


def cmd_vectors():
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler, LCMScheduler
    from transformers import CLIPTokenizer

    # torch.randn of several sizes and sequences of draws.
    rng = []
    for seed, shapes in [(0, [[1], [3], [7], [15], [16], [17]]), (42, [[1, 4, 8, 8]]),
                         (2**32 + 5, [[40], [2], [33]]), (123456789, [[5], [1, 4, 2, 3], [3]])]:
        g = torch.Generator("cpu").manual_seed(seed)
        draws = [dict(shape=s, values=torch.randn(s, generator=g).flatten().tolist()) for s in shapes]
        rng.append(dict(seed=seed, draws=draws))
    (FIXTURES / "rng.json").write_text(json.dumps(rng))

    tokens = {}
    for model in MODELS:
        tok = CLIPTokenizer.from_pretrained(FIXTURES / "models" / model / "tokenizer")
        tokens[model] = [dict(prompt=p, ids=tok(p, padding="max_length", max_length=tok.model_max_length,
                                                truncation=True).input_ids) for p in TOKENIZER_PROMPTS]
    (FIXTURES / "tokenizer.json").write_text(json.dumps(tokens, ensure_ascii=False, indent=1))

    variants = [
        ("ddim", DDIMScheduler, SD1_SCHEDULER, {}, 10),
        ("ddim", DDIMScheduler, SD2_SCHEDULER, {}, 7),
        ("ddim", DDIMScheduler, SD1_SCHEDULER, {"timestep_spacing": "trailing"}, 6),
        ("ddim", DDIMScheduler, SD1_SCHEDULER, {"timestep_spacing": "linspace", "clip_sample": True}, 6),
        ("euler-a", EulerAncestralDiscreteScheduler, SD1_SCHEDULER, {}, 8),
        ("euler-a", EulerAncestralDiscreteScheduler, SD2_SCHEDULER, {}, 6),
        ("euler-a", EulerAncestralDiscreteScheduler, SD1_SCHEDULER, {"timestep_spacing": "linspace"}, 5),
        ("dpm++2m", DPMSolverMultistepScheduler, SD1_SCHEDULER, {}, 10),
        ("dpm++2m", DPMSolverMultistepScheduler, SD2_SCHEDULER, {}, 20),
        ("dpm++2m", DPMSolverMultistepScheduler, SD1_SCHEDULER, {"timestep_spacing": "trailing"}, 6),
        ("dpm++2m-karras", DPMSolverMultistepScheduler, SD1_SCHEDULER, {"use_karras_sigmas": True}, 12),
        ("dpm++2m-karras", DPMSolverMultistepScheduler, SD2_SCHEDULER, {"use_karras_sigmas": True}, 16),
        ("lcm", LCMScheduler, SD1_SCHEDULER, {}, 4),
        ("lcm", LCMScheduler, SD2_SCHEDULER, {}, 6),
    ]
    records = []
    shape = (1, 4, 2, 3)
    for name, cls, base, extra, steps in variants:
        config = dict(base, **extra)
        sched = cls.from_config(config)
        sched.set_timesteps(steps)
        data = np.random.default_rng(len(records))
        sample = torch.from_numpy(data.standard_normal(shape).astype(np.float32)) * float(sched.init_noise_sigma)
        original = torch.from_numpy(data.standard_normal(shape).astype(np.float32))
        noise = torch.from_numpy(data.standard_normal(shape).astype(np.float32))
        fresh = cls.from_config(config)
        fresh.set_timesteps(steps)
        added = [fresh.add_noise(original, noise, fresh.timesteps[i:i + 1]).flatten().tolist()
                 for i in range(len(fresh.timesteps))]
        generator = torch.Generator("cpu").manual_seed(len(records) + 1000)
        steps_out = []
        for i, t in enumerate(sched.timesteps):
            scaled = sched.scale_model_input(sample, t)
            model_output = torch.from_numpy(data.standard_normal(shape).astype(np.float32))
            sample = sched.step(model_output, t, sample, generator=generator).prev_sample
            steps_out.append(dict(scaled=scaled.flatten().tolist(), model_output=model_output.flatten().tolist(),
                                  prev=sample.flatten().tolist()))
        first = torch.from_numpy(np.random.default_rng(len(records)).standard_normal(shape).astype(np.float32))
        records.append(dict(
            scheduler=name, config=config, steps=steps, generator_seed=len(records) + 1000,
            timesteps=[float(t) for t in sched.timesteps], init_noise_sigma=float(sched.init_noise_sigma),
            initial=(first * float(sched.init_noise_sigma)).flatten().tolist(),
            original=original.flatten().tolist(), noise=noise.flatten().tolist(), added=added, steps_out=steps_out))
    (FIXTURES / "schedulers.json").write_text(json.dumps(records))


# ----- reference outputs ------------------------------------------------------------------

class OrtUnet:
    def __init__(self, session):
        self.session = session

    def __call__(self, sample, timestep, encoder_hidden_states=None, **kwargs):
        t = torch.as_tensor(timestep, dtype=torch.float32).reshape(-1).expand(sample.shape[0])
        out = self.session.run(None, {"sample": sample.numpy().astype(np.float32),
                                      "timestep": t.numpy().astype(np.float32),
                                      "encoder_hidden_states": encoder_hidden_states.numpy().astype(np.float32)})[0]
        return (torch.from_numpy(out),)


def ort_pipeline(model_dir: Path):
    """diffusers' own torch inpainting pipeline whose networks run the ONNX files."""
    import onnxruntime as ort
    from diffusers import AutoencoderKL, StableDiffusionInpaintPipeline, UNet2DConditionModel, DDIMScheduler
    from diffusers.models.autoencoders.vae import DecoderOutput, DiagonalGaussianDistribution
    from diffusers.models.modeling_outputs import AutoencoderKLOutput
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    opts = ort.SessionOptions()
    sess = {k: ort.InferenceSession(str(model_dir / k / "model.onnx"), opts, providers=["CPUExecutionProvider"])
            for k in ("text_encoder", "unet", "vae_encoder", "vae_decoder")}
    # Small torch modules only carry the configs the pipeline reads; ORT does the work.
    unet = UNet2DConditionModel.from_config(json.loads((model_dir / "unet" / "config.json").read_text()))
    vae = AutoencoderKL.from_config(json.loads((model_dir / "vae_decoder" / "config.json").read_text()))
    text = CLIPTextModel(CLIPTextConfig.from_pretrained(model_dir / "text_encoder"))
    tokenizer = CLIPTokenizer.from_pretrained(model_dir / "tokenizer")
    scheduler = DDIMScheduler.from_config(json.loads((model_dir / "scheduler" / "scheduler_config.json").read_text()))
    pipe = StableDiffusionInpaintPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet,
                                          scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                          requires_safety_checker=False)
    ort_unet = OrtUnet(sess["unet"])
    unet.forward = lambda *a, **k: ort_unet(*a, **k)

    def text_forward(input_ids, attention_mask=None, output_hidden_states=None, **kwargs):
        ids = input_ids.numpy().astype(np.int32)
        return (torch.from_numpy(sess["text_encoder"].run(None, {"input_ids": ids})[0]),)
    text.forward = text_forward

    def encode(x, return_dict=True):
        moments = torch.from_numpy(sess["vae_encoder"].run(None, {"sample": x.numpy().astype(np.float32)})[0])
        dist = DiagonalGaussianDistribution(moments)
        return AutoencoderKLOutput(latent_dist=dist) if return_dict else (dist,)

    def decode(z, return_dict=True, generator=None, **kwargs):
        out = torch.from_numpy(sess["vae_decoder"].run(None, {"latent_sample": z.numpy().astype(np.float32)})[0])
        return DecoderOutput(sample=out) if return_dict else (out,)
    vae.encode = encode
    vae.decode = decode
    return pipe


def scheduler_for(pipe, name):
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler, LCMScheduler

    config = pipe.scheduler.config
    return {
        "ddim": lambda: DDIMScheduler.from_config(config),
        "euler-a": lambda: EulerAncestralDiscreteScheduler.from_config(config),
        "dpm++2m": lambda: DPMSolverMultistepScheduler.from_config(config, use_karras_sigmas=False),
        "dpm++2m-karras": lambda: DPMSolverMultistepScheduler.from_config(config, use_karras_sigmas=True),
        "lcm": lambda: LCMScheduler.from_config(config),
    }[name]()


def cmd_cases():
    (FIXTURES / "cases.json").write_text(json.dumps(CASES, indent=2) + "\n")


def cmd_references(names=()):
    from PIL import Image

    cases = json.loads((FIXTURES / "cases.json").read_text())
    if names:
        unknown = set(names) - {c["name"] for c in cases}
        if unknown:
            sys.exit(f"unknown cases: {', '.join(sorted(unknown))}")
        cases = [c for c in cases if c["name"] in names]
    prepared = FIXTURES / "prepared"
    refs = FIXTURES / "references"
    refs.mkdir(exist_ok=True)
    pipes = {}
    for case in cases:
        model = case["model"]
        folder, tiny, tiny_encoder = MODEL_VARIANTS.get(model, (model, None, None))
        tile = DECODE_TILES.get(model)
        if (folder, tile) not in pipes:
            pipes[(folder, tile)] = (tiled_decode_pipeline(FIXTURES / "models" / folder, tile) if tile
                                     else ort_pipeline(FIXTURES / "models" / folder))
        pipe = pipes[(folder, tile)]
        image = Image.open(prepared / f"{case['name']}-image.png").convert("RGB")
        mask = Image.open(prepared / f"{case['name']}-mask.png").convert("L")
        if tiny_encoder:
            pipe = tiny_vae_pipeline(pipe, FIXTURES / "models" / folder, tiny, tiny_encoder, image)
            tiny = None  # the pipeline decodes with AutoencoderTiny itself
        strength = json.loads((prepared / f"{case['name']}.json").read_text())["strength"]
        for i in range(case["n"]):
            pipe.scheduler = scheduler_for(pipe, case["scheduler"])
            seed = case["seed"] + i
            captured = {}

            def keep(p, step, t, kwargs):
                captured["latents"] = kwargs["latents"].clone()
                return kwargs
            out = pipe(prompt=case["prompt"], negative_prompt=case["negative"], image=image, mask_image=mask,
                       height=image.height, width=image.width, strength=strength,
                       num_inference_steps=case["steps"], guidance_scale=case["guidance"],
                       generator=torch.Generator("cpu").manual_seed(seed),
                       output_type="latent" if tiny else "pil",
                       callback_on_step_end=keep, callback_on_step_end_tensor_inputs=["latents"])
            if tiny:
                picture = tiny_decode(out.images, FIXTURES / "models" / folder / tiny, pipe)
            else:
                picture = out.images[0]
            picture.save(refs / f"{case['name']}-{i}.png")
            captured["latents"].numpy().astype("<f4").tofile(refs / f"{case['name']}-{i}.f32")
        print("reference", case["name"])


def tiled_decode_pipeline(model_dir: Path, tile: int):
    """ort_pipeline whose VAE decodes through diffusers' own AutoencoderKL tiling
    (`enable_tiling()`, tiles of TILE pixels): the tiles run the exported decoder, which
    includes post_quant_conv, so the module's post_quant_conv becomes the identity. The
    encoder is not tiled (`decode_tile` tiles the decode only)."""
    import onnxruntime as ort

    pipe = ort_pipeline(model_dir)
    vae = pipe.vae
    del vae.decode  # back to AutoencoderKL.decode, which tiles
    session = ort.InferenceSession(str(model_dir / "vae_decoder" / "model.onnx"), providers=["CPUExecutionProvider"])

    class OrtDecoder(torch.nn.Module):
        def forward(self, z, *args, **kwargs):
            latents = np.ascontiguousarray(z.numpy().astype(np.float32))
            return torch.from_numpy(session.run(None, {"latent_sample": latents})[0])
    vae.decoder = OrtDecoder()
    vae.post_quant_conv = torch.nn.Identity()
    vae.enable_tiling()
    vae.tile_sample_min_size = tile
    vae.tile_latent_min_size = tile // pipe.vae_scale_factor
    return pipe


def tiny_vae_pipeline(pipe, model_dir: Path, decoder: str, encoder: str, image):
    """The same pipeline with the tiny AutoencoderTiny (the torch module the fixture was
    exported from) as its VAE, for encoding and decoding, as a diffusers user would set
    `vae=AutoencoderTiny...`. The exported ONNX encoder and decoder must agree with the
    module first, on this case's image and on its latents, so the reference also checks
    the export."""
    import onnxruntime as ort
    from diffusers import StableDiffusionInpaintPipeline

    vae = make_tiny_vae()
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
    with torch.no_grad():
        latents = vae.encode(x).latents
        decoded = vae.decode(latents).sample
    for part, name, value, expected in [(encoder, "sample", x, latents), (decoder, "latent_sample", latents, decoded)]:
        session = ort.InferenceSession(str(model_dir / part / "model.onnx"), providers=["CPUExecutionProvider"])
        worst = float(np.abs(session.run(None, {name: value.numpy()})[0] - expected.numpy()).max())
        if worst > 1e-4:
            sys.exit(f"{model_dir / part}: the export differs from AutoencoderTiny by {worst}")
    return StableDiffusionInpaintPipeline(**{**pipe.components, "vae": vae})


def tiny_decode(latents, folder: Path, pipe):
    """What diffusers makes of the UNet's final latents with AutoencoderTiny as the VAE:
    `vae.decode(latents / vae.config.scaling_factor)` and the pipeline's postprocess, on
    the torch module the fixture was exported from. The exported ONNX decoder must agree
    with it first, so the reference also checks the export."""
    import onnxruntime as ort

    vae = make_tiny_vae()
    with torch.no_grad():
        image = vae.decode(latents / vae.config.scaling_factor).sample
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    exported = session.run(None, {"latent_sample": (latents / vae.config.scaling_factor).numpy()})[0]
    worst = float(np.abs(exported - image.numpy()).max())
    if worst > 1e-4:
        sys.exit(f"{folder}: the exported tiny decoder differs from AutoencoderTiny by {worst}")
    return pipe.image_processor.postprocess(image, output_type="pil", do_denormalize=[True])[0]


if __name__ == "__main__":
    commands = {"models": cmd_models, "tiny-vae": cmd_tiny_vae, "ort-unet": cmd_ort_unet, "int8-unet": cmd_int8_unet, "cases": cmd_cases, "vectors": cmd_vectors,
                "references": cmd_references}
    if len(sys.argv) < 2 or sys.argv[1] not in commands or (len(sys.argv) > 2 and sys.argv[1] != "references"):
        sys.exit(__doc__)
    torch.set_num_threads(2)
    commands[sys.argv[1]](*([sys.argv[2:]] if len(sys.argv) > 2 else []))
