"""The hand-written product taxonomy behind the synthetic catalogue.

Everything the generator knows about products lives here: categories and their brands, product
types with their attribute schema, common and rare synonyms, equivalent-type families and
complement (accessory) relations. The vocabulary is fixed (it does not depend on the seed) so a
label rule can always be recomputed from a dataset's product types alone.

Design rules the generator and tests rely on:

- attribute *values* are compared by (attribute key, value text), so "navy" means the same colour
  on a sofa and on a cushion; a value list is ordered most common first (Zipf popularity);
- rare synonyms are query-only: none of their words occurs in any item title or description,
  which is what makes tail queries hard for a lexical matcher;
- types in one ``family`` are equivalent (mutual substitutes); ``complements`` are symmetric.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

SAME, EQUIVALENT, COMPLEMENT, UNRELATED = 0, 1, 2, 3
RELATIONS: tuple[str, ...] = ("same", "equivalent", "complement", "unrelated")


@dataclass(frozen=True)
class AttributeDomain:
    """A vocabulary for one attribute key, e.g. furniture colours under key ``color``.

    ``query_forms`` are other ways shoppers write a value ("gray" for "grey"); titles always
    use the value itself.
    """

    name: str
    key: str
    values: tuple[str, ...]
    query_forms: dict[str, tuple[str, ...]]
    query_prefix: str = ""  # connector a query may put before the value ("for", "in")


@dataclass(frozen=True)
class ProductType:
    """One product type with its vocabulary and relations to other types."""

    name: str
    category: str
    synonyms: tuple[str, ...]
    rare_synonyms: tuple[str, ...]
    attributes: tuple[str, ...]  # domain names; each domain's key is unique within the type
    variants: tuple[str, ...]  # domains that vary within one product line (colour, size, ...)
    model_style: str  # "code" ("Nova X5"), "collection" ("Harper") or "" (no model/series)
    family: str  # types sharing a family are equivalent
    complements: tuple[str, ...]
    popularity: float = 1.0


@dataclass(frozen=True)
class Category:
    name: str
    brands: tuple[str, ...]
    series: tuple[str, ...]  # words model/series names are built from
    blurbs: tuple[str, ...]  # marketing sentences for descriptions


def _d(
    name: str,
    key: str,
    values: str,
    forms: dict[str, tuple[str, ...]] | None = None,
    prefix: str = "",
) -> AttributeDomain:
    return AttributeDomain(
        name, key, tuple(v.strip() for v in values.split("|")), forms or {}, prefix
    )


# fmt: off
DOMAINS: tuple[AttributeDomain, ...] = (
    _d("device_color", "color", "black|silver|white|space grey|blue|gold|green", {"space grey": ("space gray", "dark grey")}, "in"),
    _d("home_color", "color", "grey|beige|navy|green|black|white|brown|charcoal|cream|blush pink", {"grey": ("gray",), "navy": ("navy blue", "dark blue"), "beige": ("tan", "sand"), "cream": ("ivory",)}, "in"),
    _d("kitchen_color", "color", "black|stainless|white|red|cream|sage green|copper", {"stainless": ("stainless steel", "silver"), "sage green": ("sage", "mint")}, "in"),
    _d("apparel_color", "color", "black|white|navy|grey|olive|red|burgundy|beige|pink|royal blue", {"grey": ("gray",), "burgundy": ("maroon", "wine"), "olive": ("khaki green",), "royal blue": ("cobalt",)}, "in"),
    _d("sport_color", "color", "black|blue|red|green|orange|grey|purple|teal|yellow", {"grey": ("gray",), "teal": ("turquoise",)}, "in"),
    _d("toy_color", "color", "pink|blue|red|purple|multicolor|yellow|green", {"multicolor": ("rainbow", "multicolour")}),
    _d("pet_color", "color", "brown|grey|black|beige|blue|red|pink", {"grey": ("gray",)}),
    _d("beauty_color", "color", "white|black|pink|blue|rose gold|mint", {"mint": ("sage",)}),
    _d("apparel_size", "size", "medium|large|small|x-large|x-small|xx-large", {"medium": ("m", "med"), "large": ("l", "lg"), "small": ("s", "sm"), "x-large": ("xl", "extra large"), "x-small": ("xs", "extra small"), "xx-large": ("xxl", "2xl")}, "size"),
    _d("shoe_size", "size", "size 9|size 10|size 8|size 11|size 7|size 12", {"size 7": ("us 7", "7"), "size 8": ("us 8", "8"), "size 9": ("us 9", "9"), "size 10": ("us 10", "10"), "size 11": ("us 11", "11"), "size 12": ("us 12", "12")}),
    _d("gender", "gender", "men's|women's|unisex|kids'", {"men's": ("mens", "men"), "women's": ("womens", "ladies"), "kids'": ("kids", "youth")}),
    _d("seats", "size", "3-seater|2-seater|4-seater", {"3-seater": ("3 seater", "three seater"), "2-seater": ("2 seater", "two seater"), "4-seater": ("4 seater", "four seater")}),
    _d("sectional_shape", "shape", "l-shaped|u-shaped|reversible|modular", {"l-shaped": ("l shaped", "corner"), "u-shaped": ("u shaped",)}),
    _d("upholstery", "material", "velvet|linen|leather|faux leather|boucle|microfiber", {"faux leather": ("vegan leather", "pu leather"), "leather": ("genuine leather",), "microfiber": ("microfibre",)}),
    _d("wood", "material", "oak|walnut|pine|acacia|mango wood|engineered wood", {"engineered wood": ("mdf",), "mango wood": ("mango",)}),
    _d("table_shape", "shape", "rectangular|round|oval|square", {"rectangular": ("rectangle",), "round": ("circular",)}),
    _d("furniture_style", "style", "modern|mid-century|farmhouse|scandinavian|industrial|traditional|coastal", {"mid-century": ("mid century", "mcm"), "scandinavian": ("scandi", "nordic")}),
    _d("bed_size", "size", "queen|king|full|twin|california king", {"queen": ("queen size",), "king": ("king size",), "full": ("double",), "twin": ("single",), "california king": ("cal king",)}),
    _d("mattress_type", "material", "memory foam|hybrid|innerspring|latex", {"innerspring": ("spring", "coil")}),
    _d("firmness", "firmness", "medium firm|firm|plush|extra firm", {"plush": ("soft",), "medium firm": ("medium",)}),
    _d("pillow_size", "size", "18x18 inch|20x20 inch|12x20 inch|22x22 inch", {"18x18 inch": ("18 x 18", "18in"), "20x20 inch": ("20 x 20",), "12x20 inch": ("lumbar",)}),
    _d("fill", "fill", "polyester fill|feather fill|down alternative", {"feather fill": ("feather",)}),
    _d("chair_material", "material", "mesh|leather|fabric|faux leather", {"faux leather": ("pu leather",), "mesh": ("mesh back",)}),
    _d("chair_feature", "feature", "ergonomic|high back|armless|reclining", {"high back": ("high-back", "tall back")}),
    _d("desk_size", "size", "48 inch|55 inch|40 inch|63 inch", {"48 inch": ('48"', "4 ft")}),
    _d("desk_type", "style", "standing|l-shaped|writing|corner", {"standing": ("sit stand", "height adjustable"), "l-shaped": ("l shaped",)}),
    _d("phone_storage", "storage", "128GB|256GB|64GB|512GB|1TB", {"128GB": ("128 gb", "128g"), "256GB": ("256 gb",), "64GB": ("64 gb",), "512GB": ("512 gb",), "1TB": ("1 tb",)}),
    _d("network", "network", "5G|4G LTE", {"4G LTE": ("lte", "4g")}),
    _d("carrier", "carrier", "unlocked|prepaid", {"unlocked": ("sim free", "carrier unlocked")}),
    _d("laptop_storage", "storage", "512GB SSD|256GB SSD|1TB SSD|2TB SSD", {"512GB SSD": ("512gb", "512 gb ssd"), "1TB SSD": ("1tb", "1 tb ssd")}),
    _d("ram", "memory", "16GB RAM|8GB RAM|32GB RAM|4GB RAM", {"16GB RAM": ("16gb", "16 gb ram"), "8GB RAM": ("8gb", "8 gb ram"), "32GB RAM": ("32gb",)}),
    _d("laptop_screen", "screen_size", "15.6 inch|14 inch|13.3 inch|16 inch|17.3 inch|11.6 inch", {"15.6 inch": ('15.6"', "15 inch"), "14 inch": ('14"',), "13.3 inch": ("13 inch",), "17.3 inch": ("17 inch",)}),
    _d("tv_size", "screen_size", "55 inch|65 inch|50 inch|43 inch|75 inch|32 inch|85 inch", {"55 inch": ('55"', "55in"), "65 inch": ('65"', "65in"), "50 inch": ('50"', "50in"), "43 inch": ('43"', "43in"), "75 inch": ('75"', "75in"), "32 inch": ('32"', "32in"), "85 inch": ('85"', "85in")}),
    _d("resolution", "resolution", "4K UHD|1080p Full HD|8K|720p HD", {"4K UHD": ("4k", "ultra hd", "2160p"), "1080p Full HD": ("full hd", "1080p", "fhd")}),
    _d("display_tech", "display", "LED|QLED|OLED|mini-LED", {"mini-LED": ("mini led",)}),
    _d("lumens", "brightness", "3000 lumens|5000 lumens|8000 lumens|1500 lumens", {"3000 lumens": ("3000lm",)}),
    _d("audio_channels", "channels", "2.1 channel|3.1 channel|5.1 channel|2.0 channel", {"5.1 channel": ("5.1ch", "5.1"), "2.1 channel": ("2.1ch", "2.1")}),
    _d("connectivity", "connectivity", "wireless|wired|bluetooth", {"wireless": ("cordless",), "wired": ("corded",)}),
    _d("noise_control", "feature", "noise cancelling|noise isolating|open back", {"noise cancelling": ("noise canceling", "anc"), "open back": ("open-back",)}),
    _d("case_style", "style", "slim|rugged|wallet|clear", {"wallet": ("folio", "flip"), "rugged": ("heavy duty", "shockproof")}),
    _d("phone_model_fit", "compatibility", "6.1 inch phones|6.7 inch phones|6.4 inch phones", {"6.1 inch phones": ("6.1in",)}),
    _d("charger_power", "power", "20W|30W|65W|100W|45W", {"20W": ("20 watt",), "65W": ("65 watt",)}),
    _d("connector", "connector", "USB-C|micro-USB|USB-A", {"USB-C": ("type c", "usb c"), "micro-USB": ("micro usb",)}),
    _d("mouse_grip", "style", "ergonomic|compact|vertical|gaming", {"vertical": ("upright",)}),
    _d("coffee_capacity", "capacity", "12-cup|10-cup|5-cup|single-serve|14-cup", {"12-cup": ("12 cup",), "10-cup": ("10 cup",), "single-serve": ("single serve", "one cup", "1 cup")}),
    _d("carafe", "carafe", "glass carafe|thermal carafe", {"thermal carafe": ("insulated carafe",)}),
    _d("espresso_type", "style", "semi-automatic|super-automatic|manual|capsule", {"super-automatic": ("fully automatic", "bean to cup"), "manual": ("lever",), "semi-automatic": ("semi automatic",)}),
    _d("pump_pressure", "pressure", "15 bar|20 bar|9 bar", {"15 bar": ("15bar",), "20 bar": ("20bar",)}),
    _d("grinder_type", "style", "conical burr|flat burr|blade", {"conical burr": ("burr",)}),
    _d("blender_power", "power", "1000W|1200W|1500W|700W", {"1000W": ("1000 watt",), "1500W": ("1500 watt",)}),
    _d("blender_capacity", "capacity", "64 oz|48 oz|72 oz|24 oz", {"64 oz": ("64oz",), "72 oz": ("72oz",)}),
    _d("fryer_capacity", "capacity", "5.8 qt|4 qt|8 qt|10 qt|2 qt", {"5.8 qt": ("5.8 quart", "6 quart"), "4 qt": ("4 quart",), "8 qt": ("8 quart",)}),
    _d("fryer_type", "style", "basket|oven style|dual basket", {"dual basket": ("two basket", "2 basket")}),
    _d("cookware_material", "material", "nonstick|stainless steel|cast iron|ceramic|carbon steel|hard-anodized", {"nonstick": ("non-stick", "non stick"), "stainless steel": ("stainless",), "hard-anodized": ("anodized",)}),
    _d("pan_size", "size", "10 inch|12 inch|8 inch|14 inch", {"10 inch": ('10"',), "12 inch": ('12"',)}),
    _d("wok_bottom", "shape", "flat bottom|round bottom", {"flat bottom": ("flat",)}),
    _d("knife_steel", "material", "german steel|japanese steel|damascus steel|carbon steel", {"damascus steel": ("damascus",), "german steel": ("german stainless",)}),
    _d("blade_length", "size", "8 inch|6 inch|10 inch|7 inch", {"8 inch": ('8"',)}),
    _d("board_material", "material", "bamboo|maple|plastic|walnut|acacia", {"plastic": ("polypropylene",)}),
    _d("board_size", "size", "large|medium|small|extra large", {"extra large": ("xl",)}),
    _d("toaster_slots", "size", "2-slice|4-slice", {"2-slice": ("2 slice", "two slice"), "4-slice": ("4 slice", "four slice")}),
    _d("toaster_feature", "feature", "wide slot|long slot|bagel setting", {"wide slot": ("extra wide",)}),
    _d("fabric", "material", "cotton|organic cotton|polyester|cotton blend|merino wool|fleece", {"cotton": ("100% cotton",), "merino wool": ("merino",), "polyester": ("poly",)}),
    _d("fit", "fit", "regular fit|slim fit|relaxed fit|oversized", {"slim fit": ("slim",), "relaxed fit": ("loose fit", "relaxed")}),
    _d("jeans_fit", "fit", "straight|skinny|bootcut|relaxed|wide leg", {"straight": ("straight leg",), "skinny": ("skinny fit",)}),
    _d("wash", "wash", "dark wash|medium wash|light wash|black wash", {"dark wash": ("dark denim",), "light wash": ("light denim",)}),
    _d("sleeve", "sleeve", "short sleeve|long sleeve|sleeveless", {"long sleeve": ("long-sleeve",), "short sleeve": ("short-sleeve",)}),
    _d("shoe_use", "use", "road|trail|gym|walking", {"road": ("road running",)}),
    _d("cushioning", "cushioning", "max cushion|neutral|stability", {"max cushion": ("maximum cushioning", "plush cushion")}),
    _d("sock_length", "style", "crew|ankle|no-show|knee-high", {"ankle": ("low cut",), "no-show": ("no show", "invisible")}),
    _d("pack_size", "pack", "6-pack|3-pack|12-pack|1-pack", {"6-pack": ("6 pack", "6 pairs"), "3-pack": ("3 pack", "3 pairs"), "12-pack": ("12 pack", "12 pairs")}),
    _d("insulation", "insulation", "down|synthetic|fleece-lined", {"down": ("goose down", "duck down"), "fleece-lined": ("fleece lined",)}),
    _d("jacket_length", "length", "hip length|mid-length|cropped", {"mid-length": ("mid length", "long")}),
    _d("mat_thickness", "thickness", "6mm|4mm|8mm|10mm|3mm", {"6mm": ("6 mm", "1/4 inch"), "10mm": ("10 mm", "extra thick")}),
    _d("mat_material", "material", "TPE|natural rubber|PVC|cork|NBR foam", {"natural rubber": ("rubber",), "NBR foam": ("foam",)}),
    _d("block_material", "material", "foam|cork|bamboo", {"foam": ("eva foam",)}),
    _d("dumbbell_weight", "weight", "10 lb|15 lb|20 lb|5 lb|25 lb|30 lb|50 lb", {"5 lb": ("5 lbs", "5 pound"), "10 lb": ("10 lbs", "10 pound"), "15 lb": ("15 lbs", "15 pound"), "20 lb": ("20 lbs", "20 pound"), "25 lb": ("25 lbs", "25 pound"), "30 lb": ("30 lbs", "30 pound"), "50 lb": ("50 lbs", "50 pound")}),
    _d("dumbbell_style", "style", "hex rubber|neoprene|adjustable|chrome", {"hex rubber": ("hex", "rubber hex"), "neoprene": ("vinyl",)}),
    _d("kettlebell_weight", "weight", "16 kg|12 kg|20 kg|8 kg|24 kg", {"16 kg": ("16kg", "35 lb"), "12 kg": ("12kg", "26 lb"), "8 kg": ("8kg",)}),
    _d("kettlebell_style", "style", "cast iron|competition|vinyl coated", {"competition": ("steel competition",)}),
    _d("tent_capacity", "capacity", "2-person|4-person|6-person|1-person|8-person", {"2-person": ("2 person", "two man"), "4-person": ("4 person", "four man"), "1-person": ("solo", "one man")}),
    _d("season", "season", "3-season|4-season", {"3-season": ("3 season",), "4-season": ("4 season", "winter")}),
    _d("temp_rating", "temperature", "20 degree|0 degree|40 degree|-10 degree", {"20 degree": ("20f", "20 deg"), "0 degree": ("0f",)}),
    _d("bag_shape", "shape", "mummy|rectangular|double wide", {"rectangular": ("envelope",)}),
    _d("frame_size", "size", "medium frame|large frame|small frame", {"medium frame": ("medium", "m frame")}),
    _d("wheel_size", "wheel_size", "29 inch|27.5 inch|26 inch|700c", {"29 inch": ("29er", '29"'), "27.5 inch": ("650b", '27.5"')}),
    _d("frame_material", "material", "aluminum|carbon fiber|steel", {"aluminum": ("aluminium", "alloy"), "carbon fiber": ("carbon",)}),
    _d("helmet_size", "size", "medium|large|small", {"medium": ("m",)}),
    _d("helmet_use", "use", "road|mountain|commuter", {"mountain": ("mtb",), "commuter": ("urban", "city")}),
    _d("hair_type", "hair_type", "all hair types|dry hair|oily hair|curly hair|color-treated hair|fine hair", {"dry hair": ("damaged hair",), "curly hair": ("curls", "wavy hair"), "color-treated hair": ("colour treated", "dyed hair"), "fine hair": ("thin hair",)}, "for"),
    _d("scent", "scent", "unscented|lavender|coconut|citrus|rose|vanilla|tea tree|eucalyptus", {"unscented": ("fragrance free",), "citrus": ("lemon",)}),
    _d("bottle_volume", "size", "250ml|400ml|500ml|1L|100ml", {"250ml": ("250 ml", "8 oz"), "500ml": ("500 ml", "16 oz"), "1L": ("1 liter", "33 oz")}),
    _d("hair_formula", "formula", "sulfate-free|keratin|argan oil|biotin|tea tree oil", {"sulfate-free": ("sulfate free", "no sulfate"), "argan oil": ("argan",)}),
    _d("skin_type", "skin_type", "all skin types|dry skin|oily skin|sensitive skin|combination skin", {"oily skin": ("acne prone skin",), "sensitive skin": ("sensitive",)}, "for"),
    _d("spf", "spf", "SPF 30|SPF 50|SPF 15|SPF 70", {"SPF 30": ("spf30",), "SPF 50": ("spf50", "spf 50+")}),
    _d("sun_form", "form", "lotion|spray|stick|gel", {"spray": ("mist",)}),
    _d("face_form", "form", "cream|gel|lotion|balm", {"gel": ("gel cream",)}),
    _d("shade", "shade", "red|nude|pink|berry|coral|plum|mauve", {"red": ("classic red",), "nude": ("neutral",)}),
    _d("lip_finish", "finish", "matte|satin|glossy|sheer", {"glossy": ("shiny", "shine")}),
    _d("brush_modes", "feature", "3 modes|5 modes|1 mode", {"3 modes": ("3 mode",), "5 modes": ("5 mode",)}),
    _d("head_count", "pack", "4-pack|8-pack|2-pack|12-pack", {"4-pack": ("4 pack", "4 count"), "8-pack": ("8 pack", "8 count")}),
    _d("head_type", "style", "precision clean|gum care|whitening|sensitive", {"whitening": ("white",)}),
    _d("age_range", "age", "ages 3+|ages 5+|ages 8+|ages 12+|18 months+", {"ages 3+": ("3 year old", "3 years and up"), "ages 5+": ("5 year old",), "ages 8+": ("8 year old", "8 years and up"), "18 months+": ("toddler",)}, "for"),
    _d("piece_count", "pieces", "500 pieces|1000 pieces|250 pieces|100 pieces|1500 pieces", {"100 pieces": ("100 pcs", "100 pc", "100 piece"), "250 pieces": ("250 pcs", "250 pc", "250 piece"), "500 pieces": ("500 pcs", "500 pc", "500 piece"), "1000 pieces": ("1000 pcs", "1000 pc", "1000 piece"), "1500 pieces": ("1500 pcs", "1500 pc", "1500 piece")}),
    _d("theme", "theme", "space|dinosaurs|castle|city|ocean|unicorn|farm|robots", {"dinosaurs": ("dinosaur", "dino"), "robots": ("robot",)}),
    _d("rc_scale", "scale", "1:16|1:10|1:24|1:12", {"1:16": ("1/16",), "1:10": ("1/10",), "1:24": ("1/24",)}),
    _d("rc_terrain", "terrain", "off-road|on-road|all-terrain", {"off-road": ("off road",), "all-terrain": ("all terrain",)}),
    _d("doll_size", "size", "12 inch|18 inch|14 inch|6 inch", {"18 inch": ('18"',), "12 inch": ('12"',)}),
    _d("doll_hair", "hair", "blonde|brunette|black hair|red hair", {"blonde": ("blond",), "brunette": ("brown hair",)}),
    _d("battery_size", "size", "AA|AAA|9V|C|D", {"AA": ("double a",), "AAA": ("triple a",)}),
    _d("battery_count", "pack", "8-pack|24-pack|4-pack|48-pack", {"8-pack": ("8 pack", "8 count"), "24-pack": ("24 pack", "24 count")}),
    _d("battery_chem", "chemistry", "alkaline|rechargeable NiMH|lithium", {"rechargeable NiMH": ("rechargeable", "nimh")}),
    _d("pet_size", "size", "medium|large|small|x-large", {"medium": ("medium dogs",), "x-large": ("xl", "extra large")}, "for"),
    _d("pet_bed_style", "style", "orthopedic|donut|bolster-free|cooling|elevated", {"donut": ("calming", "round"), "orthopedic": ("memory foam",), "elevated": ("raised",)}),
    _d("flavor", "flavor", "chicken|beef|salmon|lamb|turkey", {"chicken": ("chicken recipe",), "salmon": ("fish",)}),
    _d("life_stage", "life_stage", "adult|puppy|senior|all life stages", {"senior": ("older dogs",)}),
    _d("food_bag", "size", "30 lb|15 lb|5 lb|4 lb", {"30 lb": ("30lb", "30 pound"), "15 lb": ("15lb",)}),
    _d("diet", "diet", "grain-free|high protein|limited ingredient|weight control", {"grain-free": ("grain free", "no grain")}),
    _d("leash_length", "length", "6 ft|4 ft|16 ft retractable|10 ft", {"6 ft": ("6 foot", "6'"), "16 ft retractable": ("retractable",)}),
    _d("leash_material", "material", "nylon|leather|rope|reflective nylon", {"rope": ("climbing rope",)}),
    _d("litter_type", "style", "clumping|non-clumping|crystal|pine pellet", {"clumping": ("scoopable",), "crystal": ("silica",), "pine pellet": ("pine", "wood pellet")}),
    _d("litter_weight", "size", "20 lb|40 lb|10 lb|25 lb", {"20 lb": ("20lb",), "40 lb": ("40lb",)}),
    _d("litter_box_style", "style", "hooded|open|self-cleaning|top entry", {"hooded": ("covered", "enclosed"), "self-cleaning": ("automatic",)}),
)
# fmt: on


def _t(
    name: str,
    category: str,
    synonyms: str,
    rare: str,
    attributes: str,
    variants: str,
    model_style: str = "code",
    family: str = "",
    complements: str = "",
    popularity: float = 1.0,
) -> ProductType:
    def split(s: str) -> tuple[str, ...]:
        return tuple(x.strip() for x in s.split("|") if x.strip())

    return ProductType(
        name=name,
        category=category,
        synonyms=split(synonyms),
        rare_synonyms=split(rare),
        attributes=split(attributes),
        variants=split(variants),
        model_style=model_style,
        family=family or name,
        complements=split(complements),
        popularity=popularity,
    )


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# fmt: off
CATEGORIES: tuple[Category, ...] = (
    Category("electronics",
             ("Voltra", "Nexon", "Aurion", "Kestrel", "Zentek", "Orbiq", "Sonera", "Lumatek"),
             _words("Nova Vertex Pulse Orbit Zenith Flux Echo Atlas Halo Prism Vista Quest Strata Nimbus Titan Aura Helix Ion Apex Sigma Fusion Spark Vector Cosmo"),
             ("Backed by a one-year limited warranty.", "Designed for everyday reliability at home, at work and on the go.", "Fast setup with clear step-by-step instructions in the box.", "Energy efficient design with a sleek, minimal look.")),
    Category("home",
             ("Oakhurst", "Lindenwood", "Harrowgate", "Nordvik", "Calloway", "Brightwood", "Stonebridge", "Marlowe"),
             _words("Harper Ashby Hollis Wren Sutton Carver Ellison Bexley Rowan Thornton Whitby Linley Maddox Everett Haven Sloane Porter Calder Finley Greer Holloway Kendal Lyle Merritt"),
             ("Easy assembly with all hardware included.", "Built to bring warmth and comfort to any living space.", "A timeless piece that pairs well with modern and classic decor.", "Sturdy construction for years of everyday use.")),
    Category("kitchen",
             ("Culina", "Brevo", "Hearthstone", "Saltbox", "Copperline", "Zestiva", "Panora", "Kitchora"),
             _words("Brio Gusto Sabor Forte Crema Vivo Pronto Bravo Delizia Sapore Rustica Aroma Presto Tempo Maestro Cucina Mezzo Volta Dolce Vero Fresco Sole Lume Alba"),
             ("Dishwasher-safe parts make cleanup quick.", "Made for home cooks who want dependable results every day.", "Compact footprint that fits neatly on any countertop.", "Thoughtful details designed with professional chefs.")),
    Category("apparel",
             ("Northvale", "Urbanite", "Fieldcraft", "Driftline", "Wildmere", "Kinsale", "Avenra", "Bramblewood"),
             _words("Trailhead Everyday Coastline Metro Heritage Drift Canyon Harbor Alpine Voyager Boulevard Meadow Ember Frost Tundra Sierra Cascade Pioneer Ranger Highland Outpost Breaker Summit Skyline"),
             ("Machine washable and made to keep its shape wash after wash.", "A wardrobe staple designed for all-day comfort.", "Tailored for an easy fit that layers well in every season.", "Thoughtfully made with durable stitching and soft-touch fabric.")),
    Category("sports",
             ("Peakform", "Trailcraft", "Summitline", "Ironclad", "Stridewell", "Bluefin", "Arcadia", "Ridgeway"),
             _words("Velo Stride Terra Ridge Glide Surge Torque Vortex Kinetic Dash Rapid Trek Sprint Boost Grip Core Endure Crest Rally Blaze Pinnacle Swift Ascent Flow"),
             ("Tested by athletes for performance you can count on.", "Built tough for training, trails and weekend adventures.", "Lightweight and durable for active lifestyles.", "Engineered for comfort during long sessions.")),
    Category("beauty",
             ("Lumiere", "Aurelle", "Glowhaus", "Solenne", "Purely", "Belvia", "Doree", "Velvetine"),
             _words("Radiance Hydra Velour Botanica Silk Lumin Pure Bloom Dew Satin Petal Glow Aqua Essence Serene Vital Opal Pearl Amber Jade Iris Lotus Coral Ivy"),
             ("Dermatologist tested and cruelty free.", "Gentle enough for everyday use.", "Formulated without parabens or harsh additives.", "Leaves a fresh, clean feel after every use.")),
    Category("toys",
             ("Kidzo", "Tinkertown", "Brightbloc", "Funforge", "Wondertoy", "Jollyjack", "Cubbie", "Starling"),
             _words("Mighty Zoomers Buddies Heroes Legends Racers Critters Pals Champs Sparklers Wizards Rangers Troopers Dynamos Blasters Hoppers Twisters Chompers Glimmers Wobblers Dazzlers Explorers Giggles Rockets"),
             ("Encourages imaginative play and creativity.", "Safety tested to meet toy standards.", "A great gift for birthdays and holidays.", "Hours of fun for the whole family.")),
    Category("pets",
             ("Pawsome", "Tailwag", "Whiskerly", "Barkley", "Furbrook", "Snoutly", "Petrova", "Mossy Paw"),
             _words("Comfort Cozy Trail Snug Classic Active Fresh Natural Everest Prairie Harvest Orchard Willow Aspen Cedar Maple Birch Juniper Hazel Sage Clover Thistle Fern Briar"),
             ("Vet recommended for happy, healthy pets.", "Made with durable materials that stand up to daily use.", "Easy to clean and built to last.", "Designed for the comfort of pets of every size.")),
)
# fmt: on

# One type per row reads as a table, so the formatter leaves these tables alone.
# fmt: off
PRODUCT_TYPES: tuple[ProductType, ...] = (
    # name, category, common synonyms, rare synonyms (query-only), attribute domains,
    # variant domains, then model style / family / complements / popularity where not default
    # electronics
    _t("smartphone", "electronics", "cell phone|mobile phone", "handset|cellular", "device_color|phone_storage|network|carrier", "device_color|phone_storage",
       complements="phone case|phone charger|earbuds|headphones", popularity=2.0),
    _t("phone case", "electronics", "phone cover|protective case", "bumper", "device_color|case_style|phone_model_fit", "device_color",
       model_style="", complements="smartphone", popularity=1.3),
    _t("phone charger", "electronics", "usb charger|wall charger", "power adapter|plug-in adapter", "charger_power|connector|device_color", "device_color",
       model_style="", complements="smartphone|laptop|chromebook", popularity=0.9),
    _t("laptop", "electronics", "notebook|laptop computer", "ultrabook|portable pc", "device_color|laptop_storage|ram|laptop_screen", "laptop_storage|ram",
       complements="wireless mouse|phone charger", popularity=1.8),
    _t("chromebook", "electronics", "chrome os laptop", "cloudbook", "device_color|laptop_storage|ram|laptop_screen", "laptop_screen",
       family="laptop", complements="wireless mouse|phone charger", popularity=0.7),
    _t("wireless mouse", "electronics", "computer mouse|bluetooth mouse", "mice", "device_color|mouse_grip|connectivity", "device_color",
       complements="laptop|chromebook", popularity=0.8),
    _t("television", "electronics", "tv|smart tv", "telly|flatscreen", "tv_size|resolution|display_tech", "tv_size",
       family="screen", complements="soundbar", popularity=1.7),
    _t("projector", "electronics", "home theater projector|video projector", "beamer", "resolution|lumens|device_color", "device_color",
       family="screen", complements="soundbar", popularity=0.6),
    _t("soundbar", "electronics", "sound bar|tv speaker", "audio bar|home cinema bar", "audio_channels|device_color|connectivity", "device_color",
       complements="television|projector", popularity=0.8),
    _t("headphones", "electronics", "over-ear headphones|headset", "cans", "device_color|connectivity|noise_control", "device_color",
       family="audio", complements="smartphone", popularity=1.3),
    _t("earbuds", "electronics", "wireless earbuds|in-ear headphones", "earphones|earpieces", "device_color|noise_control|connectivity", "device_color",
       family="audio", complements="smartphone", popularity=1.2),
    # home
    _t("sofa", "home", "couch|sofa couch", "davenport|settee", "home_color|upholstery|seats|furniture_style", "home_color|seats",
       model_style="collection", complements="throw pillow|coffee table", popularity=2.0),
    _t("loveseat", "home", "love seat|small sofa", "courting bench", "home_color|upholstery|furniture_style", "home_color",
       model_style="collection", family="sofa", complements="throw pillow|coffee table", popularity=0.8),
    _t("sectional sofa", "home", "sectional|corner sofa|sectional couch", "chaise group", "home_color|upholstery|sectional_shape|furniture_style", "home_color|sectional_shape",
       model_style="collection", family="sofa", complements="throw pillow|coffee table", popularity=1.1),
    _t("armchair", "home", "accent chair|lounge chair", "fauteuil|wingchair", "home_color|upholstery|furniture_style", "home_color",
       model_style="collection", complements="throw pillow"),
    _t("coffee table", "home", "cocktail table|center table", "teapoy", "wood|table_shape|furniture_style", "wood",
       model_style="collection", complements="sofa|loveseat|sectional sofa"),
    _t("throw pillow", "home", "cushion|decorative pillow", "scatter cushion|toss pillow", "home_color|pillow_size|fill", "home_color|pillow_size",
       model_style="", complements="sofa|loveseat|sectional sofa|armchair"),
    _t("bed frame", "home", "platform bed|bed", "bedstead", "bed_size|wood|furniture_style", "bed_size",
       model_style="collection", complements="mattress", popularity=1.2),
    _t("mattress", "home", "foam mattress|bed mattress", "sleep pad|futon pad", "bed_size|mattress_type|firmness", "bed_size",
       model_style="collection", complements="bed frame", popularity=1.3),
    _t("office chair", "home", "desk chair|task chair|computer chair", "swivel seat|roller chair", "chair_material|chair_feature|home_color", "home_color",
       model_style="collection", complements="desk", popularity=1.1),
    _t("desk", "home", "computer desk|writing table", "escritoire|bureau", "desk_size|desk_type|wood", "desk_size",
       model_style="collection", complements="office chair"),
    # kitchen
    _t("coffee maker", "kitchen", "coffee machine|drip coffee maker", "percolator|cafetiere", "coffee_capacity|carafe|kitchen_color", "kitchen_color",
       family="coffee", complements="coffee grinder", popularity=1.4),
    _t("espresso machine", "kitchen", "espresso maker|cappuccino machine", "barista machine|macchinetta", "espresso_type|pump_pressure|kitchen_color", "kitchen_color",
       family="coffee", complements="coffee grinder"),
    _t("coffee grinder", "kitchen", "burr grinder|coffee mill", "bean crusher", "grinder_type|kitchen_color", "kitchen_color",
       complements="coffee maker|espresso machine", popularity=0.7),
    _t("blender", "kitchen", "countertop blender|smoothie blender", "liquidiser|mixie", "blender_power|blender_capacity|kitchen_color", "kitchen_color",
       popularity=1.2),
    _t("air fryer", "kitchen", "hot air fryer|air fryer oven", "convection cooker", "fryer_capacity|fryer_type|kitchen_color", "kitchen_color|fryer_capacity",
       popularity=1.5),
    _t("toaster", "kitchen", "bread toaster|pop-up toaster", "toast maker|bread browner", "toaster_slots|toaster_feature|kitchen_color", "kitchen_color|toaster_slots",
       popularity=0.9),
    _t("frying pan", "kitchen", "skillet|fry pan", "frypan|sauteuse", "cookware_material|pan_size", "pan_size",
       family="pan", complements="chef knife", popularity=1.2),
    _t("wok", "kitchen", "stir fry pan|wok pan", "kadai|karahi", "cookware_material|pan_size|wok_bottom", "pan_size",
       family="pan", complements="chef knife", popularity=0.6),
    _t("chef knife", "kitchen", "kitchen knife|cooks knife", "gyuto", "knife_steel|blade_length", "blade_length",
       complements="cutting board|frying pan|wok", popularity=0.9),
    _t("cutting board", "kitchen", "chopping board|butcher block board", "trencher", "board_material|board_size", "board_size",
       model_style="", complements="chef knife", popularity=0.8),
    # apparel
    _t("t-shirt", "apparel", "tee|crew neck tee", "singlet|camiseta", "gender|apparel_color|apparel_size|fabric|fit", "apparel_color|apparel_size",
       model_style="collection", complements="jeans", popularity=1.8),
    _t("hoodie", "apparel", "hooded sweatshirt|pullover hoodie", "hoody|kangaroo sweater", "gender|apparel_color|apparel_size|fabric", "apparel_color|apparel_size",
       model_style="collection", family="sweat", popularity=1.3),
    _t("sweatshirt", "apparel", "crewneck sweatshirt|fleece pullover", "jumper", "gender|apparel_color|apparel_size|fabric", "apparel_color|apparel_size",
       model_style="collection", family="sweat", popularity=0.9),
    _t("jeans", "apparel", "denim jeans|denim pants", "denims|jeanswear", "gender|jeans_fit|wash|apparel_size", "wash|apparel_size",
       model_style="collection", complements="t-shirt", popularity=1.5),
    _t("running shoes", "apparel", "running sneakers|jogging shoes", "trainers|runners", "gender|shoe_size|apparel_color|shoe_use|cushioning", "shoe_size|apparel_color",
       family="shoes", complements="socks", popularity=1.6),
    _t("sneakers", "apparel", "casual shoes|lifestyle sneakers", "kicks|plimsolls", "gender|shoe_size|apparel_color", "shoe_size|apparel_color",
       model_style="collection", family="shoes", complements="socks", popularity=1.2),
    _t("socks", "apparel", "athletic socks|cotton socks", "hosiery", "gender|sock_length|pack_size|apparel_color", "pack_size",
       model_style="", complements="running shoes|sneakers|hiking boots", popularity=0.9),
    _t("winter jacket", "apparel", "winter coat|puffer jacket", "anorak|parka", "gender|apparel_color|apparel_size|insulation|jacket_length", "apparel_color|apparel_size",
       model_style="collection", popularity=1.2),
    # sports
    _t("yoga mat", "sports", "exercise mat|workout mat", "asana mat", "sport_color|mat_thickness|mat_material", "sport_color",
       complements="yoga block", popularity=1.2),
    _t("yoga block", "sports", "yoga brick|exercise block", "asana prop", "block_material|sport_color", "sport_color",
       model_style="", complements="yoga mat", popularity=0.5),
    _t("dumbbells", "sports", "hand weights|free weights", "dbs|iron pair", "dumbbell_weight|dumbbell_style", "dumbbell_weight",
       family="weights", popularity=1.2),
    _t("kettlebell", "sports", "kettle bell|swing weight", "girya", "kettlebell_weight|kettlebell_style", "kettlebell_weight",
       family="weights", popularity=0.7),
    _t("tent", "sports", "camping tent|backpacking tent", "bivouac|bivvy", "tent_capacity|season|sport_color", "tent_capacity",
       complements="sleeping bag"),
    _t("sleeping bag", "sports", "camping sleeping bag|sleep sack", "bedroll", "temp_rating|bag_shape|sport_color", "sport_color",
       complements="tent", popularity=0.8),
    _t("mountain bike", "sports", "mtb|trail bike", "atb|fat tyre cycle", "frame_size|wheel_size|frame_material|sport_color", "frame_size|sport_color",
       family="bike", complements="bike helmet|hiking boots"),
    _t("road bike", "sports", "racing bike|road bicycle", "tourer|drop-bar cycle", "frame_size|frame_material|sport_color", "frame_size|sport_color",
       family="bike", complements="bike helmet", popularity=0.7),
    _t("bike helmet", "sports", "cycling helmet|bicycle helmet", "brain bucket", "helmet_size|helmet_use|sport_color", "helmet_size|sport_color",
       complements="mountain bike|road bike", popularity=0.8),
    _t("hiking boots", "sports", "trekking boots|hiking shoes", "tramping boots", "gender|shoe_size|sport_color", "shoe_size",
       model_style="collection", complements="socks|mountain bike", popularity=0.9),
    # beauty
    _t("shampoo", "beauty", "hair shampoo|clarifying shampoo", "hairwash|lather wash", "hair_type|scent|bottle_volume|hair_formula", "bottle_volume",
       model_style="collection", complements="conditioner", popularity=1.4),
    _t("conditioner", "beauty", "hair conditioner|conditioning treatment", "creme rinse", "hair_type|scent|bottle_volume", "bottle_volume",
       model_style="collection", complements="shampoo"),
    _t("moisturizer", "beauty", "face cream|face moisturizer", "emollient", "skin_type|face_form|scent", "face_form",
       model_style="collection", complements="sunscreen", popularity=1.2),
    _t("sunscreen", "beauty", "sunblock|sun lotion", "suncream|sun protector", "spf|sun_form|skin_type", "spf",
       model_style="collection", complements="moisturizer"),
    _t("lipstick", "beauty", "lip color|lip stick", "lippy", "shade|lip_finish", "shade",
       model_style="collection", family="lip"),
    _t("lip gloss", "beauty", "lip shine|lip glaze", "lip lacquer|lip varnish", "shade|lip_finish", "shade",
       model_style="collection", family="lip", popularity=0.7),
    _t("electric toothbrush", "beauty", "sonic toothbrush|power toothbrush", "oral care device|tooth cleaner", "beauty_color|brush_modes", "beauty_color",
       complements="toothbrush heads"),
    _t("toothbrush heads", "beauty", "replacement brush heads|toothbrush refills", "bristle refills|spare heads", "head_type|head_count", "head_count",
       model_style="", complements="electric toothbrush", popularity=0.6),
    # toys
    _t("building blocks set", "toys", "building bricks|construction set", "stud blocks|brick kit", "piece_count|theme|age_range", "theme",
       popularity=1.3),
    _t("doll", "toys", "fashion doll|baby doll", "poppet", "doll_size|doll_hair|age_range", "doll_hair",
       model_style="collection", family="figure", complements="dollhouse"),
    _t("action figure", "toys", "figurine|collectible figure", "poseable", "theme|doll_size|age_range", "theme",
       model_style="collection", family="figure", popularity=0.9),
    _t("dollhouse", "toys", "doll house|play house", "miniature mansion", "toy_color|age_range", "toy_color",
       model_style="collection", complements="doll", popularity=0.6),
    _t("remote control car", "toys", "rc car|radio controlled car", "rc buggy|slot racer", "rc_scale|rc_terrain|toy_color|age_range", "toy_color",
       complements="aa batteries"),
    _t("aa batteries", "toys", "batteries|battery pack", "dry cells|cells", "battery_size|battery_count|battery_chem", "battery_count",
       model_style="", complements="remote control car", popularity=0.7),
    _t("jigsaw puzzle", "toys", "puzzle|picture puzzle", "mosaic tiles", "piece_count|theme|age_range", "piece_count",
       ),
    # pets
    _t("dog bed", "pets", "pet bed|dog cushion", "kennel pad", "pet_size|pet_bed_style|pet_color", "pet_size|pet_color",
       family="pet bed", popularity=1.1),
    _t("cat bed", "pets", "kitten bed|cat cushion", "cat cave", "pet_bed_style|pet_color", "pet_color",
       family="pet bed", popularity=0.6),
    _t("dog food", "pets", "dry dog food|dog kibble", "chow|doggy grub", "flavor|life_stage|food_bag|diet", "food_bag",
       model_style="collection", popularity=1.5),
    _t("dog leash", "pets", "dog lead|walking leash", "tether", "leash_length|leash_material|pet_color", "pet_color|leash_length",
       complements="dog collar", popularity=0.9),
    _t("dog collar", "pets", "pet collar|adjustable collar", "neckband", "pet_size|leash_material|pet_color", "pet_size|pet_color",
       complements="dog leash", popularity=0.8),
    _t("cat litter", "pets", "kitty litter|clumping litter", "grit|cat sand", "litter_type|scent|litter_weight", "litter_weight",
       model_style="collection", complements="litter box"),
    _t("litter box", "pets", "cat litter box|litter pan", "cat commode|kitty loo", "litter_box_style|pet_color", "pet_color",
       complements="cat litter", popularity=0.7),
)
# fmt: on


@dataclass(frozen=True)
class Taxonomy:
    """The taxonomy plus the integer encodings the vectorised generator works with.

    Integer codes: type ``t`` indexes ``types``; brand ``b`` indexes ``brands`` (category,
    name); attribute key ``k`` indexes ``attribute_keys`` and a value is its index in
    ``key_values[k]``; model ``m`` indexes ``models`` (brand code, name).
    """

    categories: tuple[Category, ...]
    types: tuple[ProductType, ...]
    domains: dict[str, AttributeDomain]
    attribute_keys: tuple[str, ...]
    key_values: tuple[tuple[str, ...], ...]
    brands: tuple[tuple[int, str], ...]  # (category code, name)
    models: tuple[tuple[int, str], ...]  # (brand code, name)
    type_models: dict[tuple[int, int], tuple[int, ...]]  # (type, brand) -> model codes
    relation: np.ndarray  # int8 [T, T]: SAME / EQUIVALENT / COMPLEMENT / UNRELATED

    @property
    def type_category(self) -> np.ndarray:
        names = [c.name for c in self.categories]
        return np.array([names.index(t.category) for t in self.types], dtype=np.int16)

    def type_index(self, name: str) -> int:
        return next(i for i, t in enumerate(self.types) if t.name == name)

    def key_index(self, key: str) -> int:
        return self.attribute_keys.index(key)

    def value_code(self, key: str, value: str) -> int:
        return self.key_values[self.key_index(key)].index(value)

    def category_brands(self, category: int) -> list[int]:
        return [b for b, (c, _) in enumerate(self.brands) if c == category]

    def summary(self) -> dict[str, int]:
        return {
            "categories": len(self.categories),
            "product_types": len(self.types),
            "brands": len(self.brands),
            "models": len(self.models),
            "attribute_keys": len(self.attribute_keys),
            "attribute_domains": len(self.domains),
            "attribute_values": sum(len(v) for v in self.key_values),
            "common_synonyms": sum(len(t.synonyms) for t in self.types),
            "rare_synonyms": sum(len(t.rare_synonyms) for t in self.types),
            "equivalent_type_pairs": int((self.relation == EQUIVALENT).sum() // 2),
            "complement_type_pairs": int((self.relation == COMPLEMENT).sum() // 2),
        }


def _model_names(category: Category, brand_rank: int, ptype: ProductType) -> list[str]:
    """2-3 model/series names for one (brand, type); deterministic and globally unique."""
    rng = random.Random(zlib.crc32(f"{category.name}|{brand_rank}|{ptype.name}".encode()))
    own = category.series[brand_rank * 3 : brand_rank * 3 + 3]  # each brand owns 3 series words
    if ptype.model_style == "collection":
        return list(own[:2])  # collections span a brand's furniture, beauty lines, ...
    letters = "XSQMVRLTZ"
    count = rng.choice((2, 3))
    return [f"{word} {rng.choice(letters)}{rng.randint(2, 9)}" for word in own[:count]]


@lru_cache(maxsize=1)
def build_taxonomy() -> Taxonomy:
    """Validate the vocabulary and derive its integer encodings (cached; it never changes)."""
    domains = {d.name: d for d in DOMAINS}
    cat_names = [c.name for c in CATEGORIES]
    type_names = [t.name for t in PRODUCT_TYPES]
    if len(set(type_names)) != len(type_names):
        raise ValueError("taxonomy: duplicate product type names")
    keys: list[str] = []
    values: dict[str, list[str]] = {}
    for d in DOMAINS:
        if d.key not in values:
            keys.append(d.key)
            values[d.key] = []
        values[d.key].extend(v for v in d.values if v not in values[d.key])
    for t in PRODUCT_TYPES:
        if t.category not in cat_names:
            raise ValueError(f"taxonomy: type {t.name!r} has unknown category {t.category!r}")
        unknown = [a for a in (*t.attributes, *t.variants) if a not in domains]
        if unknown:
            raise ValueError(f"taxonomy: type {t.name!r} uses unknown domain(s) {unknown}")
        type_keys = [domains[a].key for a in t.attributes]
        if len(set(type_keys)) != len(type_keys):
            raise ValueError(f"taxonomy: type {t.name!r} has two domains with one key")
        if not set(t.variants) <= set(t.attributes):
            raise ValueError(f"taxonomy: type {t.name!r} varies a domain it does not have")
        for c in t.complements:
            if c not in type_names:
                raise ValueError(f"taxonomy: type {t.name!r} complements unknown type {c!r}")

    n = len(PRODUCT_TYPES)
    relation = np.full((n, n), UNRELATED, dtype=np.int8)
    for i, t in enumerate(PRODUCT_TYPES):
        for c in t.complements:
            j = type_names.index(c)
            relation[i, j] = relation[j, i] = COMPLEMENT
    for i, t in enumerate(PRODUCT_TYPES):
        for j, u in enumerate(PRODUCT_TYPES):
            if i != j and t.family == u.family:
                relation[i, j] = EQUIVALENT
        relation[i, i] = SAME

    words = [w for c in CATEGORIES for w in c.series]
    if len(set(words)) != len(words):
        raise ValueError("taxonomy: series words must be unique so a model name names one brand")
    for d in DOMAINS:
        if any('"' in v or "\\" in v for v in d.values):
            raise ValueError(f"taxonomy: domain {d.name!r} has a value with a quote or backslash")
    brands: list[tuple[int, str]] = []
    for ci, c in enumerate(CATEGORIES):
        if len(c.series) < 3 * len(c.brands):
            raise ValueError(f"taxonomy: category {c.name!r} needs 3 series words per brand")
        brands.extend((ci, b) for b in c.brands)
    models: list[tuple[int, str]] = []
    model_index: dict[tuple[int, str], int] = {}
    type_models: dict[tuple[int, int], tuple[int, ...]] = {}
    for ti, t in enumerate(PRODUCT_TYPES):
        if not t.model_style:
            continue
        ci = cat_names.index(t.category)
        cat = CATEGORIES[ci]
        for rank, bname in enumerate(cat.brands):
            b = brands.index((ci, bname))
            codes = []
            for name in _model_names(cat, rank, t):
                if (b, name) not in model_index:
                    model_index[(b, name)] = len(models)
                    models.append((b, name))
                codes.append(model_index[(b, name)])
            type_models[(ti, b)] = tuple(dict.fromkeys(codes))
    return Taxonomy(
        categories=CATEGORIES,
        types=PRODUCT_TYPES,
        domains=domains,
        attribute_keys=tuple(keys),
        key_values=tuple(tuple(values[k]) for k in keys),
        brands=tuple(brands),
        models=tuple(models),
        type_models=type_models,
        relation=relation,
    )
