"""The Zorro model: one transformer over audio, fusion and video tokens.

Shape letters: ``b`` batch, ``n_a``/``n_f``/``n_v`` audio/fusion/video tokens, ``r`` return
tokens, ``D`` model width (``dim``). Audio enters as mono waveforms ``(b, samples)``, video as
``(b, c, t, h, w)`` float frames.

The forward pass is layered so users reach what they need without surgery:

* :meth:`Zorro.forward_features` -- front-ends, patch embeddings, the masked transformer and
  the final norm: the final token sequences per modality.
* :meth:`Zorro.pool` -- the typed return tokens attend to those sequences.
* :meth:`Zorro.encode` -- both, returning named embeddings (``audio``, ``video``, ``fusion``,
  ``global``) and the token sequences (:class:`ZorroOutput`).
* :meth:`Zorro.forward` -- the seed's interface: ``(b, r, D)``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from typing import Any, Mapping, Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from zorro.audio import AudioFrontend
from zorro.audio_crop import warn_audio_crop
from zorro.layers import AttentionPlan, AttentionPool, AudioPatchEmbed, FeedForward, LayerNorm, SelfAttention, VideoPatchEmbed
from zorro.layers.attention import check_backend
from zorro.hub import load_pretrained, push_to_hub, save_pretrained
from zorro.layers.pos_embed import sincos_grid
from zorro.masks import TokenLayout
from zorro.model_config import POS_EMBED_KINDS, SEED_RETURN_TOKEN_TYPES, ZorroConfig, _pair  # noqa: F401 (ZorroConfig and the constants are re-exported)
from zorro.tokens import TokenTypes

logger = logging.getLogger(__name__)

@dataclass
class ZorroFeatures:
    """Final (normed) token sequence of one forward pass and where each modality sits in it.

    Attributes:
        tokens: ``(b, n, D)`` packed ``[audio | fusion | video]``.
        layout: token counts per type.
        audio_grid: ``(freq_patches, time_patches)`` or None without audio.
        video_grid: ``(T, H, W)`` tubelet grid or None without video.
    """

    tokens: torch.Tensor
    layout: TokenLayout
    audio_grid: tuple[int, int] | None = None
    video_grid: tuple[int, int, int] | None = None

    def modality(self, token_type: TokenTypes) -> torch.Tensor | None:
        """``(b, n_type, D)`` tokens of one type, or None when the sequence has none."""
        span = self.layout.span(token_type)
        if span.stop == span.start and token_type is not TokenTypes.FUSION:
            return None
        return self.tokens[:, span]


@dataclass
class ZorroOutput:
    """Named results of :meth:`Zorro.encode`.

    Attributes:
        embeddings: pooled outputs by name, each ``(b, D)``: ``audio`` (o_A), ``video``
            (o_V), ``fusion`` (o_F), ``global`` (o_G) -- those configured and computable
            from the inputs given. A type configured twice gets ``_1``, ``_2`` suffixes.
        audio_tokens: ``(b, n_a, D)`` final audio tokens, or None without audio.
        video_tokens: ``(b, n_v, D)`` final video tokens, or None without video.
        fusion_tokens: ``(b, n_f, D)`` final fusion tokens.
        audio_grid, video_grid: patch grids (see :class:`ZorroFeatures`).
    """

    embeddings: dict[str, torch.Tensor]
    audio_tokens: torch.Tensor | None
    video_tokens: torch.Tensor | None
    fusion_tokens: torch.Tensor
    audio_grid: tuple[int, int] | None = None
    video_grid: tuple[int, int, int] | None = None


class Block(nn.Module):
    """One pre-norm Zorro layer: ``x = attn(x) + x; x = ff(x) + x``."""

    def __init__(self, dim: int, dim_head: int, heads: int, ff_mult: float) -> None:
        super().__init__()
        self.attn = SelfAttention(dim, dim_head=dim_head, heads=heads)
        self.ff = FeedForward(dim, mult=ff_mult)

    def forward(self, x: torch.Tensor, plan: AttentionPlan) -> torch.Tensor:
        """``(b, n, D) -> (b, n, D)``."""
        x = self.attn(x, plan) + x
        return self.ff(x) + x


def build_audio_frontend(config: ZorroConfig) -> AudioFrontend:
    """The :class:`~zorro.audio.AudioFrontend` a :class:`Zorro` with ``config`` uses: kind,
    analysis geometry (``sample_rate`` Hz, ``spec_*`` / ``fbank_*``), normalisation and
    SpecAugment settings. Its ``features(waveform (b, samples)) -> (b, F, T)`` are the raw
    features that :meth:`Zorro.prepare_audio_features` and ``encode(audio_features=...)``
    take, so callers can cache them (or compute normalisation statistics) before a model
    exists."""
    c = config
    return AudioFrontend(
        c.audio_frontend,
        sample_rate=c.sample_rate,
        n_fft=c.spec_n_fft,
        win_length=c.spec_win_length,
        hop_length=c.spec_hop_length,
        power=c.spec_power,
        pad=c.spec_pad,
        center=c.spec_center,
        pad_mode=c.spec_pad_mode,
        num_mel_bins=c.fbank_num_mel_bins,
        frame_length=c.fbank_frame_length,
        frame_shift=c.fbank_frame_shift,
        mean=c.audio_mean,
        std=c.audio_std,
        spec_aug_freq_mask=c.spec_aug_freq_mask,
        spec_aug_time_mask=c.spec_aug_time_mask,
        spec_aug_stretch_factor=c.spec_aug_stretch_factor,
    )


class Zorro(nn.Module):
    """Zorro, the masked multimodal transformer (Recasens et al., 2023).

    Audio tokens attend only to audio, video tokens only to video, and learned fusion tokens
    to everything, in every layer; so the audio representation never depends on the video
    and vice versa. Typed return tokens pool the final tokens: AUDIO sees audio tokens only,
    VIDEO video only, FUSION fusion only, GLOBAL all of them.

    The constructor takes every argument of the ``zorro-pytorch`` seed with the same meaning
    and defaults (see :class:`ZorroConfig` for all options and their units), plus:

    * ``audio_frontend="fbank"`` (Kaldi log-mel, 128 bins, 25 ms / 10 ms at ``sample_rate``)
      or ``"spectrogram"`` (the seed's power spectrogram, ``spec_*`` arguments).
    * ``pos_embed="sincos"``: fixed separable sine-cosine embeddings of the patch grids, so any
      audio length and any video size that patchifies works; ``"none"`` as in the seed.
    * ``attn_backend="sdpa"``: block-sparse fused attention; ``"eager"`` is the dense
      reference; ``"flex"`` uses FlexAttention (see :mod:`zorro.layers.attention`).
    * ``mask_rule="zorro"``: the attention rule above. ``"full"`` (every token sees every
      token) and ``"bottleneck"`` (MBT-style: each modality sees itself and the fusion
      tokens) are the baselines Zorro is compared with; see :mod:`zorro.masks`. Only
      ``"zorro"`` keeps the audio and video outputs modality-pure.

    Use :meth:`Zorro.from_zorro_pytorch` to load a ``zorro-pytorch`` state dict.
    """

    def __init__(self, dim: int | None = None, depth: int | None = None, *, config: ZorroConfig | None = None, **kwargs: Any) -> None:
        super().__init__()
        if config is None:
            if dim is None or depth is None:
                raise TypeError("Zorro needs dim and depth (or config=ZorroConfig(...))")
            config = ZorroConfig(dim=dim, depth=depth, **kwargs)
        elif dim is not None or depth is not None or kwargs:
            raise TypeError("pass either config=... or keyword arguments, not both")
        self.config = config
        c = config

        self.audio_patch_size = _pair(c.audio_patch_size, "audio_patch_size")
        self.video_patch_size = (c.video_temporal_patch_size, *_pair(c.video_patch_size, "video_patch_size"))
        self.return_token_types = c.return_token_types
        self.max_return_tokens = len(c.return_token_types)

        self.audio_frontend = build_audio_frontend(c)
        if self.audio_frontend.num_freq_bins < self.audio_patch_size[0]:
            raise ValueError(
                f"the audio front-end gives {self.audio_frontend.num_freq_bins} frequency bins, fewer than the "
                f"audio patch height {self.audio_patch_size[0]}"
            )
        self.audio_embed = AudioPatchEmbed(self.audio_patch_size, c.dim)
        self.video_embed = VideoPatchEmbed(self.video_patch_size, c.video_channels, c.dim)
        self.fusion_tokens = nn.Parameter(torch.empty(c.num_fusion_tokens, c.dim))
        self.blocks = nn.ModuleList([Block(c.dim, c.dim_head, c.heads, c.ff_mult) for _ in range(c.depth)])
        self.norm = LayerNorm(c.dim)
        self.return_tokens = nn.Parameter(torch.empty(self.max_return_tokens, c.dim))
        self.attn_pool = AttentionPool(c.dim, dim_head=c.dim_head, heads=c.heads)
        self._grad_checkpointing = False
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise the learned tokens and linear layers of a new model.

        Learned tokens and linear weights: truncated normal, std 0.02; linear biases: zero
        (the ViT recipe). The seed draws its tokens from N(0, 1): the pooled output is
        ``attn_pool(...) + return_token``, so unit-scale return tokens make every clip's
        embedding nearly the same vector at the start and training crawls (measured on
        AV-digits). Loaded weights replace all of this.
        """
        nn.init.trunc_normal_(self.fusion_tokens, std=0.02)
        nn.init.trunc_normal_(self.return_tokens, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_zorro_pytorch(cls, state_dict: Mapping[str, torch.Tensor], **seed_kwargs: Any) -> "Zorro":
        """Build a seed-compatible model from a ``zorro-pytorch`` state dict.

        Seed-compatible mode: the seed's power spectrogram front-end, no positional
        embeddings, the seed's layer arithmetic. The result computes the seed's function with
        the seed's pooling-mask defect fixed (SPEC section 4.1). Keys are mapped by
        :func:`zorro.convert.convert_seed_state_dict` and loaded strictly.

        Args:
            state_dict: the seed model's ``state_dict()``.
            **seed_kwargs: the seed constructor's arguments (``heads``, ``dim_head``,
                ``spec_*``, patch sizes, ``return_token_types``, ...). ``dim``, ``depth`` and
                ``num_fusion_tokens`` are read from the weights when not given.
                ``attn_backend`` may be added; other options of this library may not.
        """
        from zorro.convert import convert_seed_state_dict, infer_seed_shape

        seed_names = {f.name for f in fields(ZorroConfig)} - {
            "audio_frontend", "sample_rate", "fbank_num_mel_bins", "fbank_frame_length", "fbank_frame_shift",
            "audio_mean", "audio_std", "pos_embed", "mask_rule",
        }
        foreign = sorted(set(seed_kwargs) - seed_names)
        if foreign:
            raise TypeError(f"from_zorro_pytorch takes the seed's constructor arguments (and attn_backend); got {foreign}")
        inferred = infer_seed_shape(state_dict)
        for key, value in inferred.items():
            if key in seed_kwargs and seed_kwargs[key] != value:
                raise ValueError(f"{key}={seed_kwargs[key]} was given but the weights have {key}={value}")
        kwargs = {**inferred, **seed_kwargs}
        model = cls(**kwargs, audio_frontend="spectrogram", pos_embed="none")
        n_return = state_dict["return_tokens"].shape[0]
        if n_return != model.max_return_tokens:
            raise ValueError(
                f"the weights hold {n_return} return tokens but return_token_types has {model.max_return_tokens} "
                f"({[t.name for t in model.return_token_types]}); pass the seed's return_token_types"
            )
        converted = convert_seed_state_dict(state_dict)
        try:
            model.load_state_dict(converted, strict=True)
        except RuntimeError as err:
            raise ValueError(f"the zorro-pytorch weights do not fit the constructor arguments given: {err}") from None
        return model

    def save_pretrained(self, directory: str, **kwargs: Any) -> Any:
        """Write ``model.safetensors`` and ``config.json`` into ``directory`` (see :mod:`zorro.hub`).

        Returns the folder path (or the commit URL with ``push_to_hub=True``).
        """
        return save_pretrained(self, directory, **kwargs)

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:
        """Upload to the Hugging Face Hub (``hub`` extra); see :func:`zorro.hub.push_to_hub`."""
        return push_to_hub(self, repo_id, **kwargs)

    @classmethod
    def from_pretrained(cls, name_or_path: str, **kwargs: Any) -> "Zorro":
        """Rebuild a model saved by :meth:`save_pretrained`: strict loading, never unpickles.

        ``name_or_path`` is a local folder or a Hub repo id (``hub`` extra). Keyword
        arguments: ``device``, ``dtype``, ``attn_backend`` (the only model option that may be
        overridden), ``revision``, ``cache_dir``, ``token``, ``local_files_only``
        (see :func:`zorro.hub.load_pretrained`).
        """
        return load_pretrained(cls, name_or_path, **kwargs)

    # ------------------------------------------------------------------ options

    @property
    def attn_backend(self) -> str:
        """Current attention backend name."""
        return self.config.attn_backend

    def set_attn_backend(self, name: str) -> "Zorro":
        """Switch the attention backend (``"sdpa"``, ``"eager"``, ``"flex"``); returns self.

        The backends compute the same function; only speed and memory differ.
        """
        self.config.attn_backend = check_backend(name)
        return self

    @property
    def grad_checkpointing(self) -> bool:
        """Whether training forwards recompute each layer's activations in backward."""
        return self._grad_checkpointing

    def set_grad_checkpointing(self, enabled: bool = True) -> "Zorro":
        """Turn activation (gradient) checkpointing of the transformer layers on or off; returns self.

        When on, a forward pass in training mode with gradients enabled keeps only each
        layer's input ``(b, n, D)`` and recomputes the layer's activations during backward
        (:func:`torch.utils.checkpoint.checkpoint`, non-reentrant): activation memory of the
        layers falls from ~13 ``(b, n, D)``-sized tensors per layer to about one, for one more
        forward pass of the layers in backward. The layers have no dropout, so the result
        and its gradients are unchanged. It is a run-time setting, not part of the
        configuration (not saved with the weights); evaluation and ``no_grad`` ignore it.
        """
        if not isinstance(enabled, bool):
            raise TypeError(f"set_grad_checkpointing takes True or False, got {enabled!r}")
        self._grad_checkpointing = enabled
        return self

    # ------------------------------------------------------------------ input checks

    def _check_audio(self, audio: Any) -> torch.Tensor:
        if not isinstance(audio, torch.Tensor):
            raise TypeError(f"audio must be a torch.Tensor of shape (batch, samples), got {type(audio).__name__}")
        if not audio.is_floating_point():
            raise TypeError(f"audio must be a floating-point waveform in [-1, 1], got dtype {audio.dtype}")
        if audio.dim() != 2:
            hint = " (a channel dimension? mix to mono with audio.mean(dim=1))" if audio.dim() == 3 else ""
            hint = " (one clip? use audio[None])" if audio.dim() == 1 else hint
            raise ValueError(f"audio must have shape (batch, samples), got {tuple(audio.shape)}{hint}")
        return audio

    def _check_video(self, video: Any) -> torch.Tensor:
        c = self.config
        if not isinstance(video, torch.Tensor):
            raise TypeError(f"video must be a torch.Tensor of shape (batch, channels, frames, height, width), got {type(video).__name__}")
        if not video.is_floating_point():
            raise TypeError(f"video must be floating point (convert uint8 frames with .float() / 255 and normalise), got dtype {video.dtype}")
        if video.dim() != 5:
            raise ValueError(f"video must have shape (batch, {c.video_channels}, frames, height, width), got {tuple(video.shape)}")
        if video.shape[1] != c.video_channels:
            raise ValueError(
                f"video must have {c.video_channels} channels in dim 1, shape (batch, {c.video_channels}, frames, height, width); "
                f"got {tuple(video.shape)}"
            )
        thw = tuple(video.shape[2:])
        if any(size % patch for size, patch in zip(thw, self.video_patch_size)) or any(s == 0 for s in thw):
            raise ValueError(
                f"video (frames, height, width) = {thw} must be non-zero multiples of the tubelet size "
                f"{self.video_patch_size}"
            )
        return video

    # ------------------------------------------------------------------ embeddings

    def audio_features(self, audio: torch.Tensor) -> torch.Tensor:
        """Front-end features cropped to whole patches: ``(b, samples) -> (b, F, T)`` float32.

        Features not filling a whole patch (the last frequency bins / frames) are cropped, as
        in the seed; this warns once. Raises ``ValueError`` when not even one patch fits.
        """
        audio = self._check_audio(audio)
        p1, p2 = self.audio_patch_size
        frames = self.audio_frontend.num_frames(audio.shape[-1])
        if frames < p2:
            need = self.audio_frontend.min_num_samples(p2)
            raise ValueError(
                f"audio too short: {audio.shape[-1]} samples give {max(frames, 0)} frames, fewer than one audio patch "
                f"({p2} frames); need at least {need} samples"
            )
        return self._crop_audio(self.audio_frontend(audio))  # (b, F, T)

    def prepare_audio_features(self, features: torch.Tensor) -> torch.Tensor:
        """Raw front-end features computed earlier -> what :meth:`audio_features` returns.

        ``features (b, F, T)`` as ``model.audio_frontend.features(waveform)`` gives them
        (e.g. cached once per clip, or augmented with :meth:`zorro.augment.ClipAugment.fbank`):
        normalised, SpecAugment-ed in training mode and cropped to whole patches. The model's
        output for them equals its output for the waveform (in eval mode, where no randomness
        is drawn).
        """
        spec = self.audio_frontend.postprocess(features)  # checks (b, F, T)
        if spec.shape[-1] < self.audio_patch_size[1]:
            raise ValueError(f"audio features have {spec.shape[-1]} frames, fewer than one audio patch ({self.audio_patch_size[1]} frames)")
        return self._crop_audio(spec)

    def _crop_audio(self, spec: torch.Tensor) -> torch.Tensor:
        p1, p2 = self.audio_patch_size
        height, width = spec.shape[-2:]
        rh, rw = height // p1 * p1, width // p2 * p2
        if (rh, rw) != (height, width) and not torch.compiler.is_compiling():
            warn_audio_crop(height, width, self.audio_patch_size, self.audio_frontend)  # once per run, when it matters
        return spec[:, :rh, :rw]

    def embed_audio(self, audio: torch.Tensor | None = None, *, features: torch.Tensor | None = None) -> tuple[torch.Tensor, tuple[int, int]]:
        """Audio tokens: ``(b, samples) -> (b, n_a, D)`` and the ``(freq, time)`` patch grid.

        Or, with ``features``, from raw front-end features ``(b, F, T)`` instead of the
        waveform (see :meth:`prepare_audio_features`).
        """
        spec = self.audio_features(audio) if features is None else self.prepare_audio_features(features)
        tokens, grid = self.audio_embed(spec)
        if self.config.pos_embed == "sincos":
            tokens = tokens + sincos_grid(grid, self.config.dim, device=tokens.device).to(tokens.dtype)
        return tokens, grid

    def embed_video(self, video: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """Video tokens: ``(b, c, t, h, w) -> (b, n_v, D)`` and the ``(T, H, W)`` tubelet grid."""
        tokens, grid = self.video_embed(self._check_video(video))
        if self.config.pos_embed == "sincos":
            tokens = tokens + sincos_grid(grid, self.config.dim, device=tokens.device).to(tokens.dtype)
        return tokens, grid

    # ------------------------------------------------------------------ forward passes

    def forward_features(
        self, *, audio: torch.Tensor | None = None, video: torch.Tensor | None = None, audio_features: torch.Tensor | None = None,
    ) -> ZorroFeatures:
        """Run the front-ends and the masked transformer.

        Args:
            audio: ``(b, samples)`` mono waveform at ``config.sample_rate`` Hz, or None.
            video: ``(b, c, t, h, w)`` float frames, or None. At least one must be given.
            audio_features: instead of ``audio``, raw front-end features ``(b, F, T)``
                (``audio_frontend.features(waveform)``, see :meth:`prepare_audio_features`).

        Returns:
            :class:`ZorroFeatures` with the final, normed ``(b, n, D)`` tokens.
        """
        if audio is not None and audio_features is not None:
            raise ValueError("give audio (waveforms) or audio_features (front-end features), not both")
        if audio is None and video is None and audio_features is None:
            raise ValueError("Zorro needs at least one input: audio=(batch, samples) and/or video=(batch, c, t, h, w)")
        audio_in = audio if audio is not None else audio_features
        if audio is not None:
            self._check_audio(audio)
        if audio_in is not None and video is not None:
            self._check_video(video)
            if audio_in.shape[0] != video.shape[0]:
                raise ValueError(f"audio and video batch sizes differ: audio {audio_in.shape[0]}, video {video.shape[0]}")
        parts, audio_grid, video_grid = [], None, None
        if audio_in is not None:
            audio_tokens, audio_grid = self.embed_audio(audio, features=audio_features)
            parts.append(audio_tokens)
        batch = (audio_in if audio_in is not None else video).shape[0]
        ref = parts[0] if parts else None
        if video is not None:
            video_tokens, video_grid = self.embed_video(video)
            ref = video_tokens if ref is None else ref
        fusion = self.fusion_tokens.to(ref.dtype).expand(batch, -1, -1)  # (b, n_f, D)
        parts.append(fusion)
        if video is not None:
            parts.append(video_tokens)
        layout = TokenLayout(
            num_audio=audio_tokens.shape[1] if audio_in is not None else 0,
            num_fusion=self.config.num_fusion_tokens,
            num_video=video_tokens.shape[1] if video is not None else 0,
        )
        x = torch.cat(parts, dim=1)  # (b, n, D) packed [audio | fusion | video]
        plan = AttentionPlan(layout, self.config.attn_backend, x.device, self.config.mask_rule)
        recompute = self._grad_checkpointing and self.training and torch.is_grad_enabled()
        for block in self.blocks:
            x = checkpoint(block, x, plan, use_reentrant=False) if recompute else block(x, plan)
        return ZorroFeatures(self.norm(x), layout, audio_grid, video_grid)

    def select_return_tokens(
        self,
        return_token_indices: Sequence[int] | None = None,
        *,
        has_audio: bool = True,
        has_video: bool = True,
    ) -> list[int]:
        """Validate ``return_token_indices`` against the inputs present.

        With ``None`` every return token the inputs can feed is selected (all of them when
        both modalities are given; AUDIO tokens are left out without audio, VIDEO tokens
        without video). Explicit indices must be unique ints in ``[0, r)``; asking for a token
        whose modality is missing raises ``ValueError``.
        """
        types = self.return_token_types
        if return_token_indices is None:
            chosen = [i for i, t in enumerate(types) if self._feedable(t, has_audio, has_video)]
            if not chosen:
                raise ValueError(
                    f"none of the return tokens {[t.name for t in types]} can be computed from the inputs given "
                    f"(audio {'given' if has_audio else 'missing'}, video {'given' if has_video else 'missing'})"
                )
            return chosen
        if isinstance(return_token_indices, (str, bytes)) or not isinstance(return_token_indices, Sequence):
            raise TypeError(f"return_token_indices must be a tuple of ints, got {return_token_indices!r}")
        chosen = list(return_token_indices)
        for i in chosen:
            if not isinstance(i, int) or isinstance(i, bool):
                raise TypeError(f"return_token_indices must hold ints, got {i!r}")
            if not 0 <= i < len(types):
                raise ValueError(f"return token index {i} is out of range: this model has {len(types)} return tokens (0..{len(types) - 1})")
        if len(set(chosen)) != len(chosen):
            raise ValueError(f"return_token_indices must be unique, got {tuple(chosen)}")
        if not chosen:
            raise ValueError("return_token_indices is empty; select at least one return token")
        for i in chosen:
            if not self._feedable(types[i], has_audio, has_video):
                missing = "audio" if types[i] is TokenTypes.AUDIO else "video"
                raise ValueError(
                    f"return token {i} ({types[i].name}) attends to {missing} tokens, but no {missing} was given; "
                    f"pass {missing}=... or leave it out of return_token_indices"
                )
        return chosen

    @staticmethod
    def _feedable(token_type: TokenTypes, has_audio: bool, has_video: bool) -> bool:
        if token_type is TokenTypes.AUDIO:
            return has_audio
        if token_type is TokenTypes.VIDEO:
            return has_video
        return True

    def pool(self, features: ZorroFeatures, return_token_indices: Sequence[int] | None = None) -> torch.Tensor:
        """Attention pooling with the typed return tokens: ``(b, r, D)``.

        ``return_token_indices`` as in :meth:`select_return_tokens`.
        """
        layout = features.layout
        chosen = self.select_return_tokens(
            return_token_indices, has_audio=layout.num_audio > 0, has_video=layout.num_video > 0
        )
        tokens = features.tokens
        queries = self.return_tokens[chosen].to(tokens.dtype).expand(tokens.shape[0], -1, -1)  # (b, r, D)
        types = [self.return_token_types[i] for i in chosen]
        backend = "eager" if self.config.attn_backend == "eager" else "sdpa"
        return self.attn_pool(queries, tokens, types, layout, backend) + queries

    def encode(
        self, *, audio: torch.Tensor | None = None, video: torch.Tensor | None = None, audio_features: torch.Tensor | None = None,
    ) -> ZorroOutput:
        """Named embeddings and final token sequences (see :class:`ZorroOutput`).

        Args:
            audio: ``(b, samples)`` waveform or None; video: ``(b, c, t, h, w)`` or None.
            audio_features: raw front-end features ``(b, F, T)`` instead of ``audio``
                (see :meth:`prepare_audio_features`).
        """
        features = self.forward_features(audio=audio, video=video, audio_features=audio_features)
        has_audio = audio is not None or audio_features is not None
        chosen = self.select_return_tokens(None, has_audio=has_audio, has_video=video is not None)
        pooled = self.pool(features, chosen)  # (b, r, D)
        names: dict[str, torch.Tensor] = {}
        seen: dict[str, int] = {}
        for j, i in enumerate(chosen):
            base = self.return_token_types[i].name.lower()
            k = seen.get(base, 0)
            seen[base] = k + 1
            names[base if k == 0 else f"{base}_{k}"] = pooled[:, j]
        return ZorroOutput(
            embeddings=names,
            audio_tokens=features.modality(TokenTypes.AUDIO),
            video_tokens=features.modality(TokenTypes.VIDEO),
            fusion_tokens=features.modality(TokenTypes.FUSION),
            audio_grid=features.audio_grid,
            video_grid=features.video_grid,
        )

    def forward(
        self,
        *,
        audio: torch.Tensor | None = None,
        video: torch.Tensor | None = None,
        return_token_indices: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """The seed's interface: pooled outputs ``(b, r, D)``, one row per selected return token.

        Positions keep their meaning: ``out[:, j]`` is return token ``return_token_indices[j]``,
        or return token ``j`` of ``return_token_types`` when ``return_token_indices`` is None.

        Args:
            audio: ``(b, samples)`` mono waveform or None.
            video: ``(b, c, t, h, w)`` float frames or None.
            return_token_indices: which return tokens to output (unique ints); None outputs
                every configured return token, which needs every input they attend to.

        Raises:
            ValueError: a selected (or, with None, a configured) return token needs a modality
                that was not given; the message names the token, the missing input and the
                two ways to ask for less (``return_token_indices=...``, or :meth:`encode`
                for outputs by name).
        """
        has_audio, has_video = audio is not None, video is not None
        if has_audio or has_video:  # validate the selection before any compute
            feedable = self.select_return_tokens(return_token_indices, has_audio=has_audio, has_video=has_video)
            if return_token_indices is None and len(feedable) < self.max_return_tokens:
                i = next(j for j in range(self.max_return_tokens) if j not in feedable)
                token = self.return_token_types[i]
                missing = "audio" if token is TokenTypes.AUDIO else "video"
                raise ValueError(
                    f"return token {i} ({token.name}) needs {missing}, but no {missing} was given; without "
                    f"return_token_indices forward() returns all {self.max_return_tokens} configured return tokens by "
                    f"position. Ask for less: return_token_indices={tuple(feedable)} (the tokens these inputs "
                    f"feed), or model.encode(...) for the outputs by name"
                )
        return self.pool(self.forward_features(audio=audio, video=video), return_token_indices)
