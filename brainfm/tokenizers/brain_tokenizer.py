"""BrainTokenizer: BrainOmni's sensor-aware residual-VQ tokenizer (spec ``brainomni.md`` §4).

Shapes for the published size (window W = 512 samples, hop 64, S = 8 latent steps per window,
C' = 16 latent channels, D = 256, 4 RVQ levels of 512 codes), input (B, C, T), N windows:

1. windows: (B, C, T) -> (B, C, N, W), the last zero-padded (``overlap`` > 0: stride W (1 - overlap))
2. sensor encoder: pos (B, C, 6), xyz normalised per modality group, + type (B, C) -> V (B, C, D)
3. training only: withhold max(floor(0.25 C), 1) random channels from the encoder; add N(0, 0.1^2) noise
4. SEANet encoder per kept channel and window: (B C N, 1, W) -> (B, C, N S, D) (others: zeros, never attended)
5. compression per latent step: C' learned queries attend over the kept channels
   (keys Linear(Z + V), values Linear(Z), 4 heads) -> (B, C', N S, D)
6. L2-normalise, residual VQ -> quantised (B, C', N S, D), indices (B, C', N S, levels)
7. reconstruction per latent step: the sensor embeddings of all C channels attend over the C'
   latents -> (B, C, N S, D); SEANet decoder per channel -> (B, C, N, W)
8. target: the clean input z-scored per channel and window (the decoder does not model amplitude)

Loss: L1 + exp(-PCC) + commitment + L1 of FFT amplitudes + ``phase_weight`` x L1 of FFT phases
(Hamming-windowed, orthonormal real FFT), averaged over good channels.

Initialisation is brainfm's own (:meth:`BrainTokenizer.reset_parameters`), not the reference's
(trunc-normal 0.02 Linear weights, zero biases, PyTorch's default convolutions): with the
reference's or PyTorch's defaults a short run on real, common-average-referenced EEG sits on a
saddle where the latents do not depend on the input and every channel gets the same
reconstruction (``docs/benchmarks.md``, "BrainTokenizer collapse on real EEG").
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from brainfm._check import check_range, ensure_int
from brainfm.errors import ConfigError
from brainfm.loading.batch import Batch
from brainfm.nn.data_facts import DataFacts, first_names
from brainfm.nn.rvq import ResidualVQ
from brainfm.nn.seanet import SEANetDecoder, SEANetEncoder
from brainfm.nn.sensor_encoder import SensorEncoder, normalize_positions
from brainfm.tokenizers.base import Tokenizer

__all__ = ["BrainTokenizer", "brain_tokenizer_losses"]

#: Standard deviation of the attention logits at initialisation (compression and reconstruction).
ATTENTION_LOGIT_STD = 3.0
#: Standard deviation of the sensor-type embedding at initialisation (the reference's 0.02).
TYPE_EMBEDDING_STD = 0.02


class _CrossAttention(nn.Module):
    """Multi-head attention of given queries over keys Linear(k_in) and values Linear(v_in), output Linear."""

    def __init__(self, dim: int, n_heads: int) -> None:
        super().__init__()
        self.key, self.value, self.out = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.n_heads = n_heads

    def forward(self, queries: torch.Tensor, k_in: torch.Tensor, v_in: torch.Tensor,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """queries (G, Q, D), k_in/v_in (G, K, D), key_mask (G, K) bool (True: attend) -> (G, Q, D)."""
        g, n_q, d = queries.shape
        h = self.n_heads

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(t.shape[0], t.shape[1], h, d // h).transpose(1, 2)

        mask = None if key_mask is None else key_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(heads(queries), heads(self.key(k_in)), heads(self.value(v_in)),
                                             attn_mask=mask)
        return self.out(out.transpose(1, 2).reshape(g, n_q, d))


def brain_tokenizer_losses(reconstruction: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
                           phase_weight: float = 0.5) -> dict[str, torch.Tensor]:
    """The reconstruction terms of BrainTokenizer's loss over windows (..., W).

    Parameters
    ----------
    reconstruction, target : torch.Tensor, shape (B, C, N, W)
        Decoder output and the z-scored clean windows.
    valid : torch.Tensor of bool, shape (B, C, N)
        Windows that count (good channels).
    phase_weight : float
        Weight of the phase term (0.5 in the reference code, 1 in the paper's equation).

    Returns
    -------
    terms : dict of str to torch.Tensor
        ``l1``, ``pcc`` (mean correlation), ``pcc_loss`` (exp(-pcc)), ``amplitude``, ``phase``
        and their weighted sum ``reconstruction``.
    """
    weight = valid.to(reconstruction.dtype)
    count = weight.sum().clamp_min(1.0)

    def mean(per_window: torch.Tensor) -> torch.Tensor:
        return (per_window * weight).sum() / count

    l1 = mean((reconstruction - target).abs().mean(-1))
    xc = reconstruction - reconstruction.mean(-1, keepdim=True)
    yc = target - target.mean(-1, keepdim=True)
    pcc = (xc * yc).sum(-1) / (xc.pow(2).sum(-1).sqrt() * yc.pow(2).sum(-1).sqrt() + 1e-8)
    pcc = mean(pcc)
    window = torch.hamming_window(target.shape[-1], periodic=False, dtype=target.dtype, device=target.device)
    spectrum_hat = torch.fft.rfft(reconstruction * window, norm="ortho")
    spectrum = torch.fft.rfft(target * window, norm="ortho")
    amplitude = mean((spectrum_hat.abs() - spectrum.abs()).abs().mean(-1))
    phase = mean((torch.angle(spectrum_hat) - torch.angle(spectrum)).abs().mean(-1))
    pcc_loss = torch.exp(-pcc)
    total = l1 + pcc_loss + amplitude + phase_weight * phase
    return {"l1": l1, "pcc": pcc, "pcc_loss": pcc_loss, "amplitude": amplitude, "phase": phase,
            "reconstruction": total}


class BrainTokenizer(Tokenizer):
    """BrainOmni's BrainTokenizer (the defaults are the published size; see ``configs/pretrain/braintokenizer/``).

    Parameters
    ----------
    window : int
        Samples per tokenised window (512: 2 s at 256 Hz).
    sfreq : float | None
        Sampling rate the tokenizer expects; None accepts any.
    n_filters : int
        SEANet filters of the first convolution.
    ratios : tuple of int
        SEANet strides (decoder order); their product is the hop.
    dim : int
        Latent and codebook width.
    n_codes : int
        Codes per RVQ level.
    n_levels : int
        RVQ levels.
    n_latents : int
        Latent channels C'.
    n_heads : int
        Attention heads of compression and reconstruction.
    lstm_layers : int
        LSTM layers inside the SEANet encoder and decoder.
    kernel_size, last_kernel_size : int
        SEANet first and last kernels.
    channel_dropout : float
        Share of channels withheld from the encoder in training (at least one).
    noise_std : float
        Gaussian noise added to the encoder input in training.
    commitment_weight : float
        Weight of the commitment loss (per level, averaged).
    phase_weight : float
        Weight of the phase term of the loss.
    codebook_decay : float
        EMA decay of the codebooks.
    dead_threshold : float
        EMA count under which a code is replaced.
    kmeans_samples : int
        Vectors sampled for the k-means initialisation of each level.
    quantizer_warmup : int
        Training steps that bypass the quantiser (the reconstructor decodes the L2-normalised
        latents, no commitment loss); the codebooks are k-means-initialised on the first
        batch after them. 0 (the reference): k-means on the first batch. A brainfm choice for
        short, small-batch runs (see :meth:`loss`). The step is :attr:`train_step`, which
        ``brainfm pretrain`` sets from the trainer's global step (so a resumed run agrees).
    train_channels : int
        In training, each window keeps at most this many of its usable channels, drawn at
        random per window, for both the encoder and the reconstruction target; 0 (the
        reference) keeps all. Positions are normalised over the whole montage before the draw,
        so a channel has the same sensor embedding as in evaluation. A brainfm choice for short
        CPU runs: the SEANet encoder and decoder cost grows with the channel count, so fewer
        channels per window buy more optimiser steps in the same time. Evaluation always uses
        every channel.
    """

    sensor_types = ("eeg", "mag", "grad")

    def __init__(
        self,
        window: int = 512,
        sfreq: float | None = 256.0,
        n_filters: int = 32,
        ratios: tuple[int, ...] = (8, 4, 2),
        dim: int = 256,
        n_codes: int = 512,
        n_levels: int = 4,
        n_latents: int = 16,
        n_heads: int = 4,
        lstm_layers: int = 2,
        kernel_size: int = 5,
        last_kernel_size: int = 5,
        channel_dropout: float = 0.25,
        noise_std: float = 0.1,
        commitment_weight: float = 0.25,
        phase_weight: float = 0.5,
        codebook_decay: float = 0.99,
        dead_threshold: float = 2.0,
        kmeans_samples: int = 4096,
        quantizer_warmup: int = 0,
        train_channels: int = 0,
    ) -> None:
        super().__init__()
        self.window = ensure_int("window", window)
        self.hop = math.prod(int(r) for r in ratios)
        if self.window % self.hop:
            raise ConfigError(f"window ({window}) must be a multiple of the SEANet hop prod(ratios) = {self.hop}.")
        if dim % n_heads:
            raise ConfigError(f"dim ({dim}) must divide by n_heads ({n_heads}).")
        check_range("channel_dropout", channel_dropout, 0, 1)
        self.sfreq = None if sfreq is None else float(sfreq)
        self.steps = self.window // self.hop
        self.dim, self.n_codes, self.n_levels, self.n_latents = int(dim), n_codes, n_levels, n_latents
        self.channel_dropout, self.noise_std, self.phase_weight = float(channel_dropout), float(noise_std), float(phase_weight)
        seanet = {"n_filters": n_filters, "ratios": tuple(ratios), "dimension": dim, "kernel_size": kernel_size,
                  "last_kernel_size": last_kernel_size, "lstm_layers": lstm_layers}
        self.sensor_encoder = SensorEncoder(dim)
        self.encoder = SEANetEncoder(**seanet)
        self.latent_queries = nn.Parameter(torch.randn(n_latents, dim))
        self.compress = _CrossAttention(dim, n_heads)
        self.quantizer = ResidualVQ(n_levels, n_codes, dim, commitment_weight, decay=codebook_decay,
                                    dead_threshold=dead_threshold, kmeans_samples=kmeans_samples)
        self.reconstruct = _CrossAttention(dim, n_heads)
        self.decoder = SEANetDecoder(**seanet)
        self.quantizer_warmup = ensure_int("quantizer_warmup", quantizer_warmup)
        self.train_channels = ensure_int("train_channels", train_channels)
        if self.train_channels < 0:
            raise ConfigError(f"train_channels must be >= 0 (0 keeps every channel), got {train_channels}.")
        self.train_step = 0  # training steps taken (not state: brainfm pretrain sets it from the global step)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """brainfm's initialisation: unit-gain layers, zero biases, sharp attention, position-led sensor embeddings.

        A brainfm choice (the spec fixes the architecture, not the initialisation; the
        reference initialises Linear layers trunc-normal(0.02) with zero biases and leaves the
        convolutions at PyTorch's defaults). Loading a checkpoint or reference weights overrides it.
        With PyTorch's defaults each SEANet convolution halves the signal (gain 1/sqrt(3)), so
        the encoder's data part is ~1 % of its output (the rest is bias) and Adam's steps on
        the biases (lr per step, whatever the gradient's size) dwarf it within a few steps; the
        nearly uniform attentions then average common-average-referenced channels to ~0, the
        latents stop depending on the input and every channel gets the same reconstruction.
        Here, at initialisation:

        - every bias is zero (Linear, convolution, LSTM), so a zero input gives zero latents;
        - every weight-normalised SEANet convolution has magnitude ``g = 1`` per output
          channel (unit gain: the encoder keeps its input's scale, ~0.3 of the input RMS);
        - attention key, value and output weights are N(0, 1/fan_in) (unit gain); keys are then
          scaled so that the attention logits have standard deviation ~``ATTENTION_LOGIT_STD``
          (3: a few channels or latents dominate each query instead of a uniform average),
          the reconstructor's keys and values by a further ``sqrt(dim)`` because they read
          L2-normalised latents (elements ~1/sqrt(dim));
        - the sensor-type embedding is N(0, ``TYPE_EMBEDDING_STD``^2), so that the position MLP,
          not the type (the same for every EEG channel), sets the channels' embeddings;
        - the latent queries stay standard normal (spec §4.2 step 5).
        """
        with torch.no_grad():
            for name, parameter in self.named_parameters():
                if name.endswith("bias") or ".bias_" in name:
                    parameter.zero_()
                elif name.endswith("parametrizations.weight.original0"):  # weight-norm magnitude g
                    parameter.fill_(1.0)
            self.sensor_encoder.type_embedding.weight.normal_(0.0, TYPE_EMBEDDING_STD)
            # queries have elements of RMS ~1 (standard-normal latent queries, RMS-normalised
            # sensor embeddings) and unit-gain keys give elements of RMS ~1, so the logits
            # q.k / sqrt(head_dim) have std ~1 before the key gain
            for attention, input_gain in ((self.compress, 1.0), (self.reconstruct, math.sqrt(self.dim))):
                for linear in (attention.key, attention.value, attention.out):
                    nn.init.normal_(linear.weight, 0.0, linear.in_features ** -0.5)
                attention.key.weight.mul_(ATTENTION_LOGIT_STD * input_gain)
                attention.value.weight.mul_(input_gain)

    @property
    def vocab_size(self) -> int:
        """Codes per RVQ level."""
        return self.n_codes

    def check_data(self, facts: DataFacts) -> None:
        """Refuse other channel types (EEG, MAG, GRAD only), another sampling rate, and recordings
        without any channel position, naming the recordings."""
        super().check_data(facts)
        blind = sorted(rid for rid, n in facts.positioned.items() if n == 0)
        if blind:
            raise ConfigError(
                f"BrainTokenizer needs channel positions, but {len(blind)} recordings have none "
                f"({first_names(blind)}). Give them a montage in "
                "preprocessing (positions from a template or digitisation), or leave them out with --data.datasets."
            )
        if self.sfreq is not None and abs(facts.sfreq - self.sfreq) > 1e-6:
            names = sorted(facts.recording_types)
            raise ConfigError(
                f"BrainTokenizer expects {self.sfreq:g} Hz, but the store's recordings ({first_names(names)}"
                f") are at {facts.sfreq:g} Hz. Resample them in preprocessing "
                f"(the brainomni recipe resamples to 256 Hz) or set --model.tokenizer.init_args.sfreq {facts.sfreq:g}."
            )

    # -- pieces ---------------------------------------------------------------------------------

    def n_windows(self, n_times: int, overlap: float = 0.0) -> int:
        """Windows covering ``n_times`` samples (at least one)."""
        stride = self._stride(overlap)
        return max(math.ceil(max(n_times - self.window, 0) / stride), 0) + 1

    def _stride(self, overlap: float) -> int:
        check_range("overlap", overlap, 0, 1, inclusive=True)
        stride = int(round(self.window * (1 - overlap)))
        if stride < 1:
            raise ConfigError(f"overlap {overlap} leaves no stride between windows of {self.window} samples.")
        return stride

    def windows(self, signal: torch.Tensor, overlap: float = 0.0) -> torch.Tensor:
        """(B, C, T) -> (B, C, N, W), right zero-padded so that the last window is complete."""
        stride = self._stride(overlap)
        n = self.n_windows(signal.shape[-1], overlap)
        padded = F.pad(signal, (0, (n - 1) * stride + self.window - signal.shape[-1]))
        return padded.unfold(-1, self.window, stride)

    def _withheld(self, channel_mask: torch.Tensor) -> torch.Tensor:
        """Channels withheld from the encoder (B, C): max(floor(ratio n), 1) random good channels per window batch row."""
        good = channel_mask.sum(1)
        k = torch.clamp(torch.floor(good * self.channel_dropout), min=1)
        k = torch.minimum(k, (good - 1).clamp_min(0))  # always keep one channel
        scores = torch.rand(channel_mask.shape, device=channel_mask.device).masked_fill(~channel_mask, 2.0)
        rank = scores.argsort(1).argsort(1)
        return (rank < k[:, None]) & channel_mask

    def channel_subset(self, batch: Batch) -> tuple[Batch, torch.Tensor]:
        """The batch restricted to ``train_channels`` random usable channels per row, and their sensor embeddings.

        Parameters
        ----------
        batch : Batch
            Windows with C channels.

        Returns
        -------
        subset : Batch
            The same windows with min(``train_channels``, C) channels: per row, that many of
            its usable channels drawn uniformly without replacement (in their original order),
            then unusable ones if the row has fewer usable channels (masked as before).
        sensors : torch.Tensor, shape (B, min(train_channels, C), D)
            Sensor embeddings of the kept channels, their positions normalised over the whole
            montage (:meth:`sensor_embeddings` of ``batch``), not over the subset.
        """
        c = batch.signal.shape[1]
        if self.train_channels == 0 or self.train_channels >= c:
            return batch, self.sensor_embeddings(batch)
        pos = normalize_positions(batch.sensor_pos, batch.sensor_type, batch.pos_mask)
        usable = self.usable(batch)
        scores = torch.rand(usable.shape, device=usable.device).masked_fill(~usable, 2.0)
        keep = scores.argsort(1)[:, : self.train_channels].sort(1).values  # (B, M)
        changed = {}
        for name in ("signal", "channel_mask", "sensor_pos", "sensor_type", "pos_mask", "frame_ids", "channel_ids",
                     "region_ids"):
            value = getattr(batch, name)
            index = keep.reshape(keep.shape + (1,) * (value.dim() - 2)).expand(-1, -1, *value.shape[2:])
            changed[name] = value.gather(1, index)
        pos = pos.gather(1, keep[..., None].expand(-1, -1, pos.shape[-1]))
        return replace(batch, **changed), self.sensor_encoder(pos, changed["sensor_type"])

    def encode_latents(self, batch: Batch, overlap: float = 0.0,
                       sensors: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Latents before quantisation (B, C', N S, D), sensor embeddings V (B, C, D) and windows (B, C, N, W).

        ``sensors`` (B, C, D), when given, replaces :meth:`sensor_embeddings` of ``batch``
        (:meth:`channel_subset` passes the embeddings of a whole-montage normalisation).
        """
        x = self.windows(batch.signal, overlap)
        b, c, n, w = x.shape
        if sensors is None:
            sensors = self.sensor_embeddings(batch)
        usable = self.usable(batch)
        keep = usable
        encoder_input = x
        if self.training:
            if self.channel_dropout > 0:
                keep = keep & ~self._withheld(usable)
            if self.noise_std > 0:
                encoder_input = x + self.noise_std * torch.randn_like(x)
        # only the channels the latents attend to are encoded (the others are masked out of the
        # attention anyway): withheld channels in training, bad or padding channels always
        rows = keep.reshape(b * c).nonzero().flatten()
        encoded = self.encoder(encoder_input.reshape(b * c, n, w)[rows].reshape(-1, 1, w))  # (R N, D, S)
        d, s = self.dim, self.steps
        z = encoded.new_zeros(b * c, n, d, s).index_copy(0, rows, encoded.reshape(-1, n, d, s))
        z = z.reshape(b, c, n, d, s).permute(0, 2, 4, 1, 3).reshape(b * n * s, c, d)  # (B N S, C, D)
        v = sensors[:, None].expand(b, n * s, c, d).reshape(b * n * s, c, d)
        key_mask = keep[:, None].expand(b, n * s, c).reshape(b * n * s, c)
        queries = self.latent_queries[None].expand(b * n * s, -1, -1)
        latents = self.compress(queries, z + v, z, key_mask)  # (B N S, C', D)
        return latents.reshape(b, n * s, self.n_latents, d).transpose(1, 2), sensors, x

    def quantize(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """L2-normalise and quantise: quantised (B, C', L, D), indices (B, C', L, levels), commitment loss."""
        return self.quantizer(F.normalize(latents, dim=-1))

    def reconstruct_windows(self, quantised: torch.Tensor, sensors: torch.Tensor) -> torch.Tensor:
        """Quantised latents (B, C', N S, D) and sensor embeddings (B, C, D) -> windows (B, C, N, W)."""
        b, _, length, d = quantised.shape
        c = sensors.shape[1]
        n = length // self.steps
        latents = quantised.transpose(1, 2).reshape(b * length, self.n_latents, d)
        queries = sensors[:, None].expand(b, length, c, d).reshape(b * length, c, d)
        per_channel = self.reconstruct(queries, latents, latents)  # (B L, C, D)
        per_channel = per_channel.reshape(b, n, self.steps, c, d).permute(0, 3, 1, 4, 2).reshape(b * c * n, d, self.steps)
        return self.decoder(per_channel).reshape(b, c, n, self.window)

    def sensor_embeddings(self, batch: Batch) -> torch.Tensor:
        """Sensor embeddings V (B, C, D) of the positions normalised per modality group (spec §3.2 step 5)."""
        pos = normalize_positions(batch.sensor_pos, batch.sensor_type, batch.pos_mask)
        return self.sensor_encoder(pos, batch.sensor_type)

    @staticmethod
    def usable(batch: Batch) -> torch.Tensor:
        """Channels the tokenizer encodes and reconstructs (B, C): good and with a known position
        (BrainOmni rejects channels without a location; ``Batch.pos_mask``)."""
        return batch.channel_mask & batch.pos_mask

    @staticmethod
    def target(windows: torch.Tensor) -> torch.Tensor:
        """Windows z-scored per channel and window (std + 1e-6)."""
        return (windows - windows.mean(-1, keepdim=True)) / (windows.std(-1, unbiased=False, keepdim=True) + 1e-6)

    # -- the interface ----------------------------------------------------------------------------

    def tokenize(self, batch: Batch, overlap: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (B, C', W', D) and indices (B, C', W', levels), W' = S x windows (spec §4.5)."""
        latents, _, _ = self.encode_latents(batch, overlap)
        quantised, indices, _ = self.quantize(latents)
        return quantised, indices

    @property
    def feature_dim(self) -> int:
        """Width of the quantised latents (``dim``)."""
        return int(self.get_config()["dim"])

    def features(self, batch: Batch) -> torch.Tensor:
        """Quantised latents (B, n_latents x W', dim), latent channel major, of non-overlapping windows."""
        quantised, _ = self.tokenize(batch)
        return quantised.flatten(1, 2)

    def encode(self, batch: Batch) -> torch.Tensor:
        """Code indices (B, C', W', levels) of non-overlapping windows."""
        return self.tokenize(batch)[1]

    def decode(self, tokens: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Signal (B, C, T) from indices, per window z-scored units (the decoder does not model amplitude)."""
        sensors = self.sensor_embeddings(batch)
        windows = self.reconstruct_windows(self.quantizer.decode(tokens), sensors)
        b, c, n, w = windows.shape
        signal = windows.reshape(b, c, n * w)[..., : batch.signal.shape[-1]]
        return signal.masked_fill(~self.usable(batch)[..., None], 0.0)

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Total loss (``"loss"``) and its terms; reconstruction covers every usable channel, withheld ones included.

        During the first ``quantizer_warmup`` training steps (and in evaluation before the
        codebooks exist) the quantiser is bypassed: the reconstructor decodes the L2-normalised
        latents, the commitment loss is 0 and the usage terms are 0. At the published width
        and a CPU batch of 8 windows, the codebooks fitted on the first batch no longer fit
        the latents a few steps later and the run stays at PCC ~0, while the same run without
        the quantiser learns (docs/benchmarks.md, "BrainTokenizer on the mixed EEG store").
        With ``train_channels`` set, a training batch is first cut to that many random usable
        channels per window (:meth:`channel_subset`); the terms cover those channels only.
        """
        sensors = None
        if self.training and self.train_channels:
            batch, sensors = self.channel_subset(batch)
        latents, sensors, windows = self.encode_latents(batch, sensors=sensors)
        bypass = (self.training and self.train_step < self.quantizer_warmup) or (
            not self.training and not bool(self.quantizer.layers[0].initted))
        if self.training:
            self.train_step += 1
        if bypass:
            quantised, commitment = F.normalize(latents, dim=-1), latents.new_zeros(())
            indices = None
        else:
            quantised, indices, commitment = self.quantize(latents)
        reconstruction = self.reconstruct_windows(quantised, sensors)
        valid = self.usable(batch)[:, :, None].expand(windows.shape[:3])
        terms = brain_tokenizer_losses(reconstruction, self.target(windows), valid, self.phase_weight)
        terms["commitment"] = commitment
        terms["loss"] = terms["reconstruction"] + commitment
        for level in range(self.n_levels):
            used = 0 if indices is None else torch.unique(indices[..., level]).numel()
            terms[f"usage_level{level}"] = torch.tensor(used / self.n_codes)
        return terms
