"""Maps the detector's COCO classes and the classifier's ImageNet classes onto X-Type values.

X-Type has five values (remove.bg's): person, product, animal, car, other. "car" stands for
vehicles in general (remove.bg's car type covers vehicles; our research set labels a jet as a
vehicle). "other" is for what is not a made-to-sell object: plants, fungi, landscapes, stones,
buildings and monuments. Everything else man-made (and food) is a product.
"""

from __future__ import annotations

TYPES = ("person", "product", "animal", "car", "other")

COCO_LABELS = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)

_COCO_VEHICLES = {"bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat"}
_COCO_ANIMALS = {"bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe"}
# Fixtures and plants: things a detector names that are not products.
_COCO_OTHER = {"traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "potted plant"}


def coco_type(index: int) -> str:
    label = COCO_LABELS[index]
    if label == "person":
        return "person"
    if label in _COCO_ANIMALS:
        return "animal"
    if label in _COCO_VEHICLES:
        return "car"
    if label in _COCO_OTHER:
        return "other"
    return "product"


# ImageNet-1k class indices (the standard synset order). 0-397 are all animals.
IMAGENET_ANIMALS = range(0, 398)
IMAGENET_PEOPLE = frozenset({981, 982, 983})  # ballplayer, groom, scuba diver
IMAGENET_VEHICLES = frozenset({
    403, 404, 405, 407, 408, 436, 444, 466, 468, 472, 479, 484, 510, 511, 547, 554, 555, 565, 569,
    573, 575, 576, 581, 586, 595, 603, 609, 612, 625, 627, 628, 654, 656, 661, 665, 670, 671, 675,
    690, 705, 717, 724, 734, 751, 757, 779, 780, 802, 803, 812, 814, 817, 820, 829, 833, 864, 866,
    867, 870, 871,
    874, 880, 895, 908, 914,
})
IMAGENET_OTHER = frozenset({
    # geological formations and scenery
    970, 971, 972, 973, 974, 975, 976, 977, 978, 979, 980,
    # plants, fruits of trees, fungi (947 is ImageNet's "mushroom")
    947, 984, 985, 986, 988, 989, 990, 991, 992, 993, 994, 995, 996, 997, 998,
    # buildings, monuments, fixtures in the ground
    410, 425, 437, 449, 454, 458, 460, 483, 489, 497, 498, 500, 525, 536, 562, 580, 640, 649, 660,
    663, 668, 682, 698, 706, 708, 716, 718, 727, 738, 815, 821, 825, 832, 835, 839, 858, 888, 900,
    912,
})


def imagenet_type(index: int) -> str:
    if index in IMAGENET_ANIMALS:
        return "animal"
    if index in IMAGENET_PEOPLE:
        return "person"
    if index in IMAGENET_VEHICLES:
        return "car"
    if index in IMAGENET_OTHER:
        return "other"
    return "product"


def fine_label(kind: str, coco_label: str | None) -> str:
    """X-Type at type_level 2: "<type>-<COCO class>" where the detector named the foreground
    ("animal-dog", "car-truck", "product-cell_phone"), else the type alone. A class equal to
    its type ("person", "car") is not repeated. ImageNet-only decisions stay at the type: the
    classifier's 1000 classes are too fine-grained and too often wrong to show."""
    if coco_label is None:
        return kind
    name = coco_label.replace(" ", "_")
    return kind if name == kind else f"{kind}-{name}"
