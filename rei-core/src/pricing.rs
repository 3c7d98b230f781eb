//! What each product costs, and quotes: prices frozen at the moment a user saw them.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::money::Money;

/// Length of a generated video.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum VideoDuration {
    /// 5 seconds.
    #[serde(rename = "5")]
    Five,
    /// 10 seconds.
    #[serde(rename = "10")]
    Ten,
}

impl VideoDuration {
    /// Seconds, as Kling wants them (`"5"` / `"10"`).
    #[must_use]
    pub const fn seconds(self) -> u32 {
        match self {
            Self::Five => 5,
            Self::Ten => 10,
        }
    }

    /// The duration that prices a video→video edit: the output is as long as the source,
    /// so a source up to 5 s costs the 5 s price and anything longer the 10 s price.
    #[must_use]
    pub const fn for_source_millis(millis: u32) -> Self {
        if millis <= 5_000 {
            Self::Five
        } else {
            Self::Ten
        }
    }

    /// From seconds (only 5 and 10 exist).
    #[must_use]
    pub const fn from_seconds(s: u32) -> Option<Self> {
        match s {
            5 => Some(Self::Five),
            10 => Some(Self::Ten),
            _ => None,
        }
    }
}

/// The shape of a picture or video (Nano Banana Pro's `imageConfig.aspectRatio`, Kling's
/// `aspect_ratio`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AspectRatio {
    /// Square.
    #[serde(rename = "1:1")]
    Square,
    /// Portrait 3:4.
    #[serde(rename = "3:4")]
    Portrait3x4,
    /// Landscape 4:3.
    #[serde(rename = "4:3")]
    Landscape4x3,
    /// Tall 9:16 (phones, stories).
    #[serde(rename = "9:16")]
    Tall9x16,
    /// Wide 16:9.
    #[serde(rename = "16:9")]
    Wide16x9,
    /// Cinema 21:9.
    #[serde(rename = "21:9")]
    Cinema21x9,
}

impl AspectRatio {
    /// What images offer, in menu order.
    pub const IMAGES: [Self; 6] = [
        Self::Square,
        Self::Portrait3x4,
        Self::Landscape4x3,
        Self::Tall9x16,
        Self::Wide16x9,
        Self::Cinema21x9,
    ];

    /// What Kling's text → video offers, in menu order (its default first).
    pub const VIDEOS: [Self; 3] = [Self::Wide16x9, Self::Tall9x16, Self::Square];

    /// As providers write it (`16:9`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Square => "1:1",
            Self::Portrait3x4 => "3:4",
            Self::Landscape4x3 => "4:3",
            Self::Tall9x16 => "9:16",
            Self::Wide16x9 => "16:9",
            Self::Cinema21x9 => "21:9",
        }
    }

    /// From the provider's form.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        Self::IMAGES.into_iter().find(|r| r.as_str() == text)
    }
}

impl fmt::Display for AspectRatio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The size of a generated image (Nano Banana Pro's `imageConfig.imageSize`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub enum Resolution {
    /// About 1024 px (the provider's default).
    #[default]
    #[serde(rename = "1K")]
    OneK,
    /// About 2048 px.
    #[serde(rename = "2K")]
    TwoK,
    /// About 4096 px.
    #[serde(rename = "4K")]
    FourK,
}

impl Resolution {
    /// Every size, in menu order.
    pub const ALL: [Self; 3] = [Self::OneK, Self::TwoK, Self::FourK];

    /// As the provider writes it (`2K`, upper-case `K`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::OneK => "1K",
            Self::TwoK => "2K",
            Self::FourK => "4K",
        }
    }

    const fn index(self) -> usize {
        match self {
            Self::OneK => 0,
            Self::TwoK => 1,
            Self::FourK => 2,
        }
    }
}

impl fmt::Display for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something a user can buy.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "product", rename_all = "snake_case")]
pub enum Product {
    /// Text → image of a size.
    ImageGeneration {
        /// The size (quotes stored before sizes existed read as 1K).
        #[serde(default)]
        resolution: Resolution,
    },
    /// Photo + text → edited image of a size.
    ImageEdit {
        /// The size.
        #[serde(default)]
        resolution: Resolution,
    },
    /// A video of a model and duration.
    Video {
        /// The provider's model name (e.g. `kling-v2-6`).
        model: String,
        /// Length of the result.
        duration: VideoDuration,
    },
}

impl Product {
    /// Text → image at 1K.
    #[must_use]
    pub const fn image_generation() -> Self {
        Self::ImageGeneration {
            resolution: Resolution::OneK,
        }
    }

    /// Photo + text → image at 1K.
    #[must_use]
    pub const fn image_edit() -> Self {
        Self::ImageEdit {
            resolution: Resolution::OneK,
        }
    }
}

impl std::str::FromStr for Product {
    type Err = String;

    /// A product by its name: `image_generation`, `image_edit:4k`, `video:kling-v2-6:10s`.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let image = |rest: Option<&str>| match rest {
            None => Some(Resolution::OneK),
            Some(size) => Resolution::ALL
                .into_iter()
                .find(|r| r.as_str().to_ascii_lowercase() == size),
        };
        let mut parts = name.splitn(2, ':');
        let kind = parts.next().unwrap_or_default();
        let rest = parts.next();
        let parsed = match kind {
            "image_generation" => {
                image(rest).map(|resolution| Self::ImageGeneration { resolution })
            }
            "image_edit" => image(rest).map(|resolution| Self::ImageEdit { resolution }),
            "video" => rest.and_then(|rest| {
                let (model, seconds) = rest.rsplit_once(':')?;
                let seconds: u32 = seconds.strip_suffix('s')?.parse().ok()?;
                let valid = !model.is_empty()
                    && model.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b)
                    });
                valid.then_some(())?;
                Some(Self::Video {
                    model: model.to_owned(),
                    duration: VideoDuration::from_seconds(seconds)?,
                })
            }),
            _ => None,
        };
        parsed.ok_or_else(|| format!("{name:?} is not a product name"))
    }
}

impl fmt::Display for Product {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ImageGeneration { resolution } => image_name(f, "image_generation", *resolution),
            Self::ImageEdit { resolution } => image_name(f, "image_edit", *resolution),
            Self::Video { model, duration } => write!(f, "video:{model}:{}s", duration.seconds()),
        }
    }
}

/// `image_generation` (1K, as before sizes existed), `image_generation:2k`, ….
fn image_name(f: &mut fmt::Formatter<'_>, kind: &str, resolution: Resolution) -> fmt::Result {
    match resolution {
        Resolution::OneK => f.write_str(kind),
        other => write!(f, "{kind}:{}", other.as_str().to_ascii_lowercase()),
    }
}

/// Why a price list cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    /// A price is zero (every product must cost something).
    #[error("the price of {0} must be greater than zero")]
    ZeroPrice(&'static str),
    /// The 10 s multiplier is zero.
    #[error("VIDEO_10SEC_MULTIPLIER must be at least 1")]
    ZeroMultiplier,
    /// A 10 s price does not fit.
    #[error("the 10 s price of {0} overflows")]
    Overflow(String),
}

/// Prices of every product. Built once from configuration; live price changes build a new one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceList {
    /// By [`Resolution`]: 1K, 2K, 4K.
    image_generation: [Money; 3],
    image_edit: [Money; 3],
    video_5s: Money,
    video_10s_multiplier: u32,
    video_5s_by_model: BTreeMap<String, Money>,
    /// Prices set live, by product name ([`Product`]'s display): they win.
    #[serde(default)]
    overrides: BTreeMap<String, Money>,
}

impl PriceList {
    /// A price list; every price must be positive and every 10 s price must fit.
    ///
    /// # Errors
    /// [`PricingError`] for a zero price or multiplier, or an overflowing 10 s price.
    pub fn new(
        image_generation: Money,
        image_edit: Money,
        video_5s: Money,
        video_10s_multiplier: u32,
    ) -> Result<Self, PricingError> {
        let list = Self {
            image_generation: [image_generation; 3],
            image_edit: [image_edit; 3],
            video_5s,
            video_10s_multiplier,
            video_5s_by_model: BTreeMap::new(),
            overrides: BTreeMap::new(),
        };
        list.validate()?;
        Ok(list)
    }

    /// The same list with a different 5 s price for one model.
    ///
    /// # Errors
    /// As [`PriceList::new`].
    pub fn with_model_price(
        mut self,
        model: impl Into<String>,
        price_5s: Money,
    ) -> Result<Self, PricingError> {
        self.video_5s_by_model.insert(model.into(), price_5s);
        self.validate()?;
        Ok(self)
    }

    /// The same list with the larger sizes of images priced at `percent` of the 1K
    /// price (rounded down to the kopeck, at least the 1K price): `IMAGE_2K_PRICE_PERCENT`
    /// and `IMAGE_4K_PRICE_PERCENT`.
    ///
    /// # Errors
    /// [`PricingError::Overflow`] for a price that does not fit.
    pub fn with_resolution_percent(
        mut self,
        resolution: Resolution,
        percent: u32,
    ) -> Result<Self, PricingError> {
        let i = resolution.index();
        for prices in [&mut self.image_generation, &mut self.image_edit] {
            let base = prices[0];
            let scaled = i128::from(base.kopecks()) * i128::from(percent) / 100;
            let scaled = i64::try_from(scaled)
                .ok()
                .and_then(|k| Money::from_kopecks(k).ok())
                .ok_or_else(|| PricingError::Overflow(resolution.as_str().to_owned()))?;
            prices[i] = scaled.max(base);
        }
        self.validate()?;
        Ok(self)
    }

    fn validate(&self) -> Result<(), PricingError> {
        if self.image_generation.iter().any(|p| p.is_zero()) {
            return Err(PricingError::ZeroPrice("IMAGE_GENERATION_PRICE"));
        }
        if self.image_edit.iter().any(|p| p.is_zero()) {
            return Err(PricingError::ZeroPrice("IMAGE_EDIT_PRICE"));
        }
        if self.video_10s_multiplier == 0 {
            return Err(PricingError::ZeroMultiplier);
        }
        let all_5s = std::iter::once(("default", self.video_5s))
            .chain(self.video_5s_by_model.iter().map(|(m, p)| (m.as_str(), *p)));
        for (model, p) in all_5s {
            if p.is_zero() {
                return Err(PricingError::ZeroPrice("VIDEO_5SEC_PRICE"));
            }
            if p.checked_mul(self.video_10s_multiplier).is_none() {
                return Err(PricingError::Overflow(model.to_owned()));
            }
        }
        Ok(())
    }

    /// The seed's defaults: image 50 ₽, edit 30 ₽ (at 1K; 2K at 150 % and 4K at 200 %
    /// of that), video 5 s 100 ₽, 10 s × 2.
    #[must_use]
    pub fn seed_defaults() -> Self {
        let sized =
            |k: i64| [k, k * 3 / 2, k * 2].map(|k| Money::from_kopecks(k).unwrap_or(Money::ZERO));
        Self {
            image_generation: sized(5_000),
            image_edit: sized(3_000),
            video_5s: Money::from_kopecks(10_000).unwrap_or(Money::ZERO),
            video_10s_multiplier: 2,
            video_5s_by_model: BTreeMap::new(),
            overrides: BTreeMap::new(),
        }
    }

    /// The same list with the prices set live (`rei-cli prices set`), by product name;
    /// zero prices are ignored (a product always costs something).
    #[must_use]
    pub fn with_overrides(mut self, prices: impl IntoIterator<Item = (String, Money)>) -> Self {
        self.overrides = prices
            .into_iter()
            .filter(|(_, amount)| !amount.is_zero())
            .collect();
        self
    }

    /// Every product sold with `models` and its price now, by name: images and edits
    /// at each size, and each model's 5 s and 10 s videos.
    #[must_use]
    pub fn catalog<'a>(&self, models: impl IntoIterator<Item = &'a str>) -> Vec<(Product, Money)> {
        let mut products: Vec<Product> = Resolution::ALL
            .iter()
            .map(|r| Product::ImageGeneration { resolution: *r })
            .chain(
                Resolution::ALL
                    .iter()
                    .map(|r| Product::ImageEdit { resolution: *r }),
            )
            .collect();
        for model in models {
            for duration in [VideoDuration::Five, VideoDuration::Ten] {
                products.push(Product::Video {
                    model: model.to_owned(),
                    duration,
                });
            }
        }
        products
            .into_iter()
            .map(|p| {
                let price = self.price(&p);
                (p, price)
            })
            .collect()
    }

    /// The price of a product. Never zero, never overflows (checked at construction).
    #[must_use]
    pub fn price(&self, product: &Product) -> Money {
        if let Some(price) = self.overrides.get(&product.to_string()) {
            return *price;
        }
        match product {
            Product::ImageGeneration { resolution } => self.image_generation[resolution.index()],
            Product::ImageEdit { resolution } => self.image_edit[resolution.index()],
            Product::Video { model, duration } => {
                let base = self
                    .video_5s_by_model
                    .get(model)
                    .copied()
                    .unwrap_or(self.video_5s);
                match duration {
                    VideoDuration::Five => base,
                    // Validated in `validate`: this multiplication fits.
                    VideoDuration::Ten => {
                        base.checked_mul(self.video_10s_multiplier).unwrap_or(base)
                    }
                }
            }
        }
    }

    /// A quote: the product and its price now. Stored with the job; later price changes
    /// do not touch it.
    #[must_use]
    pub fn quote(&self, product: Product) -> Quote {
        let amount = self.price(&product);
        Quote::new(product, amount)
    }
}

/// A price frozen for one purchase.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quote {
    /// What is bought.
    pub product: Product,
    /// What it costs.
    pub amount: Money,
}

impl Quote {
    /// A quote (price lists make them; stores read them back).
    #[must_use]
    pub const fn new(product: Product, amount: Money) -> Self {
        Self { product, amount }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rub(s: &str) -> Money {
        s.parse().unwrap()
    }

    #[test]
    fn seed_defaults_match_the_seed() {
        let p = PriceList::seed_defaults();
        assert_eq!(p.price(&Product::image_generation()), rub("50"));
        assert_eq!(p.price(&Product::image_edit()), rub("30"));
        let v5 = Product::Video {
            model: "kling-v3".into(),
            duration: VideoDuration::Five,
        };
        let v10 = Product::Video {
            model: "kling-v3".into(),
            duration: VideoDuration::Ten,
        };
        assert_eq!(p.price(&v5), rub("100"));
        assert_eq!(p.price(&v10), rub("200"));
    }

    #[test]
    fn ten_seconds_is_five_seconds_times_multiplier_per_model() {
        let p = PriceList::new(rub("1"), rub("1"), rub("100"), 3)
            .unwrap()
            .with_model_price("kling-v3", rub("150"))
            .unwrap();
        let v = |m: &str, d| {
            p.price(&Product::Video {
                model: m.into(),
                duration: d,
            })
        };
        assert_eq!(v("kling-v3", VideoDuration::Ten), rub("450"));
        assert_eq!(v("kling-v2-6", VideoDuration::Ten), rub("300"));
    }

    #[test]
    fn zero_prices_and_overflow_are_rejected() {
        assert_eq!(
            PriceList::new(Money::ZERO, rub("1"), rub("1"), 2),
            Err(PricingError::ZeroPrice("IMAGE_GENERATION_PRICE"))
        );
        assert_eq!(
            PriceList::new(rub("1"), rub("1"), rub("1"), 0),
            Err(PricingError::ZeroMultiplier)
        );
        let huge = Money::from_kopecks(i64::MAX / 2 + 1).unwrap();
        assert!(matches!(
            PriceList::new(rub("1"), rub("1"), huge, 2),
            Err(PricingError::Overflow(_))
        ));
    }

    #[test]
    fn quotes_are_frozen_values() {
        let old = PriceList::seed_defaults();
        let q = old.quote(Product::image_edit());
        let _new = PriceList::new(rub("1"), rub("99"), rub("1"), 2).unwrap();
        assert_eq!(q.amount, rub("30"));
    }

    #[test]
    fn larger_images_cost_a_percent_of_the_1k_price() {
        let p = PriceList::new(rub("50"), rub("30"), rub("100"), 2)
            .unwrap()
            .with_resolution_percent(Resolution::TwoK, 150)
            .unwrap()
            .with_resolution_percent(Resolution::FourK, 200)
            .unwrap();
        let image = |resolution| p.price(&Product::ImageGeneration { resolution });
        let edit = |resolution| p.price(&Product::ImageEdit { resolution });
        assert_eq!(image(Resolution::OneK), rub("50"));
        assert_eq!(image(Resolution::TwoK), rub("75"));
        assert_eq!(image(Resolution::FourK), rub("100"));
        assert_eq!(edit(Resolution::FourK), rub("60"));
        // Never below the 1K price.
        let cheap = PriceList::seed_defaults()
            .with_resolution_percent(Resolution::TwoK, 10)
            .unwrap();
        assert_eq!(
            cheap.price(&Product::ImageGeneration {
                resolution: Resolution::TwoK
            }),
            rub("50")
        );
        // Quotes stored before sizes existed read as 1K.
        let old: Product = serde_json::from_str(r#"{"product":"image_generation"}"#).unwrap();
        assert_eq!(old, Product::image_generation());
        assert_eq!(old.to_string(), "image_generation");
        assert_eq!(
            Product::ImageEdit {
                resolution: Resolution::FourK
            }
            .to_string(),
            "image_edit:4k"
        );
    }

    #[test]
    fn live_prices_win_by_product_name_and_names_round_trip() {
        let p = PriceList::seed_defaults().with_overrides([
            ("image_generation:4k".to_owned(), rub("120")),
            ("video:kling-v3:10s".to_owned(), rub("333")),
            ("image_edit".to_owned(), Money::ZERO),
        ]);
        assert_eq!(
            p.price(&Product::ImageGeneration {
                resolution: Resolution::FourK
            }),
            rub("120")
        );
        assert_eq!(p.price(&Product::image_generation()), rub("50"));
        assert_eq!(
            p.price(&Product::image_edit()),
            rub("30"),
            "zero is ignored"
        );
        let v10: Product = "video:kling-v3:10s".parse().unwrap();
        assert_eq!(p.price(&v10), rub("333"));
        let catalog = p.catalog(["kling-v3"]);
        assert_eq!(catalog.len(), 8);
        for (product, _) in &catalog {
            assert_eq!(&product.to_string().parse::<Product>().unwrap(), product);
        }
        for bad in [
            "",
            "image",
            "image_generation:8k",
            "video:kling:7s",
            "video::5s",
            "video:Kling:5s",
        ] {
            assert!(bad.parse::<Product>().is_err(), "{bad}");
        }
    }

    #[test]
    fn video_to_video_is_priced_by_source_length() {
        assert_eq!(VideoDuration::for_source_millis(3_000), VideoDuration::Five);
        assert_eq!(VideoDuration::for_source_millis(5_000), VideoDuration::Five);
        assert_eq!(VideoDuration::for_source_millis(5_001), VideoDuration::Ten);
    }
}
