"""Generate golden test vectors with the reference implementation (PyPI descript-audio-codec 1.0.0).

Needs descript-audio-codec 1.0.0 and descript-audiotools installed (audiotools imports torchaudio;
a minimal stand-in providing functional.lfilter and info is enough on a torch without torchaudio).
Usage: python make_reference_fixtures.py OUT_DIR SOURCE_AUDIO
(SOURCE_AUDIO: the speech file named in README.json; its first second, resampled to 16 kHz, is the input).
"""

import json
import pathlib
import sys

import dac
import numpy as np
import soundfile as sf
import soxr
import torch
from audiotools import AudioSignal

out = pathlib.Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)
kwargs = dict(
    encoder_dim=16,
    encoder_rates=[2, 4, 4],
    latent_dim=None,
    decoder_dim=64,
    decoder_rates=[4, 4, 2],
    n_codebooks=4,
    codebook_size=256,
    codebook_dim=8,
    quantizer_dropout=0.5,
    sample_rate=16000,
)
m = dac.DAC(**kwargs).eval()
m.save(str(out / "reference_small.pth"), package=False)

# 1.0 s of real speech at 16 kHz, mono.
src = sys.argv[2]
x, sr = sf.read(src, dtype="float32", always_2d=True)
x = x.mean(1)
x = soxr.resample(x, sr, 16000).astype(np.float32)[:16000]
x = 0.5 * x / (np.abs(x).max() + 1e-9)
sf.write(out / "input_16k.wav", x, 16000, subtype="FLOAT")

audio = torch.from_numpy(x)[None, None]
with torch.no_grad():
    audio_p = m.preprocess(audio, 16000)
    z, codes, latents, commit, cb = m.encode(audio_p)
    y = m.decode(z)
    z2, codes2, _, _, _ = m.encode(audio_p, n_quantizers=2)
    y2 = m.decode(z2)
    zc, _, _ = m.quantizer.from_codes(codes)
    yc = m.decode(zc)
    enc = m.encoder(audio_p)
np.savez(
    out / "expected_small.npz",
    encoder_out=enc.numpy(),
    z=z.numpy(),
    codes=codes.numpy(),
    latents=latents.numpy(),
    audio_out=y.numpy(),
    z_nq2=z2.numpy(),
    codes_nq2=codes2.numpy(),
    audio_out_nq2=y2.numpy(),
    z_from_codes=zc.numpy(),
    audio_from_codes=yc.numpy(),
    commitment_loss=np.float32(commit.item()),
    codebook_loss=np.float32(cb.item()),
)

# A .dac file written by the reference compress() (pickled numpy, as the reference stores it).
sig = AudioSignal(torch.from_numpy(x)[None, None].clone(), 16000)
with torch.no_grad():
    art = m.compress(sig, win_duration=0.5, verbose=False)
art.save(str(out / "reference_small.dac"))
with torch.no_grad():
    rec = m.decompress(art)
sf.write(out / "reference_small_decompressed.wav", rec.audio_data[0, 0].numpy(), 16000, subtype="FLOAT")

# Parameter names and shapes of the released configurations (no weights).
configs = {
    "44khz_8kbps": dict(sample_rate=44100, encoder_rates=[2, 4, 8, 8], decoder_rates=[8, 8, 4, 2], n_codebooks=9),
    "44khz_16kbps": dict(
        sample_rate=44100, encoder_rates=[2, 4, 8, 8], decoder_rates=[8, 8, 4, 2], n_codebooks=18, latent_dim=128
    ),
    "24khz_8kbps": dict(sample_rate=24000, encoder_rates=[2, 4, 5, 8], decoder_rates=[8, 5, 4, 2], n_codebooks=32),
    "16khz_8kbps": dict(sample_rate=16000, encoder_rates=[2, 4, 5, 8], decoder_rates=[8, 5, 4, 2], n_codebooks=12),
}
listing = {}
for name, kw in configs.items():
    mm = dac.DAC(**kw)
    listing[name] = {
        "kwargs": kw,
        "n_params": int(sum(p.numel() for p in mm.parameters())),
        "state_dict": {k: list(v.shape) for k, v in mm.state_dict().items()},
    }
(out / "released_configs.json").write_text(json.dumps(listing, indent=1))
meta = {
    "generated_by": "descript-audio-codec 1.0.0 (PyPI), torch " + torch.__version__,
    "kwargs": kwargs,
    "input": "1.0 s of LibriSpeech speech (valid/speech/sb-spk2_snt1.wav) resampled to 16 kHz, peak 0.5",
    "notes": "model in eval mode; reference_small.dac written by compress(win_duration=0.5)",
}
(out / "README.json").write_text(json.dumps(meta, indent=1))
print("ok", [p.name for p in out.iterdir()])
