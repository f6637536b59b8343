"""Food-101 (ETH Zurich): 101,000 food photographs, 101 classes; the natural-image control with DINO-style views."""

from lejepa_domains import Recipe, TrainConfig
from lejepa_domains.data.hub import HFSource
from lejepa_domains.data.views import default_augment

CLASSES = sorted("""apple_pie baby_back_ribs baklava beef_carpaccio beef_tartare beet_salad beignets bibimbap
bread_pudding breakfast_burrito bruschetta caesar_salad cannoli caprese_salad carrot_cake ceviche cheesecake
cheese_plate chicken_curry chicken_quesadilla chicken_wings chocolate_cake chocolate_mousse churros clam_chowder
club_sandwich crab_cakes creme_brulee croque_madame cup_cakes deviled_eggs donuts dumplings edamame
eggs_benedict escargots falafel filet_mignon fish_and_chips foie_gras french_fries french_onion_soup
french_toast fried_calamari fried_rice frozen_yogurt garlic_bread gnocchi greek_salad grilled_cheese_sandwich
grilled_salmon guacamole gyoza hamburger hot_and_sour_soup hot_dog huevos_rancheros hummus ice_cream lasagna
lobster_bisque lobster_roll_sandwich macaroni_and_cheese macarons miso_soup mussels nachos omelette onion_rings
oysters pad_thai paella pancakes panna_cotta peking_duck pho pizza pork_chop poutine prime_rib
pulled_pork_sandwich ramen ravioli red_velvet_cake risotto samosa sashimi scallops seaweed_salad
shrimp_and_grits spaghetti_bolognese spaghetti_carbonara spring_rolls steak strawberry_shortcake sushi tacos
takoyaki tiramisu tuna_tartare waffles""".split(), key=lambda s: s.replace("_", ""))  # the ClassLabel order


def augment() -> list:
    # Natural photographs: the DINO / LeJEPA multi-crop recipe (flip, strong colour jitter, grayscale, blur, solarize).
    return default_augment()


recipe = Recipe(
    name="food101",
    description="Food-101; test = the hub 'validation' split (the official test set); val carved from train",
    source=HFSource("ethz/food101", revision="d420fa681efa870059c1d8047aab8732530372e3", convert="RGB",
                    resize="center-crop", carve={"val": {"from": "train", "fraction": 0.1, "seed": 0}}),
    num_classes=101,
    class_names=CLASSES,
    splits={"train": "train", "val": "val", "test": "validation"},
    image_size=224,
    channels=3,
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    global_size=224,
    local_size=96,
    global_scale=(0.25, 1.0),
    local_scale=(0.05, 0.25),
    global_augment=augment,
    local_augment=augment,
    backbone="resnet50",
    train=TrainConfig(epochs=100, batch_size=256, lr=5e-4, weight_decay=5e-2, lam=0.05, warmup_epochs=5,
                      num_slices=1024, num_workers=12),
    licence="unknown: scientific fair use only (Foodspotting)",
    citation="Bossard, Guillaumin & Van Gool, Food-101: Mining Discriminative Components with Random Forests, "
             "ECCV 2014",
    homepage="https://huggingface.co/datasets/ethz/food101",
    size="train 68,175 / val 7,575 (carved) / test 25,250",
)
