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

/// Something a user can buy.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "product", rename_all = "snake_case")]
pub enum Product {
    /// Text → image.
    ImageGeneration,
    /// Photo + text → edited image.
    ImageEdit,
    /// A video of a model and duration.
    Video {
        /// The provider's model name (e.g. `kling-v2-6`).
        model: String,
        /// Length of the result.
        duration: VideoDuration,
    },
}

impl fmt::Display for Product {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ImageGeneration => f.write_str("image_generation"),
            Self::ImageEdit => f.write_str("image_edit"),
            Self::Video { model, duration } => write!(f, "video:{model}:{}s", duration.seconds()),
        }
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
    image_generation: Money,
    image_edit: Money,
    video_5s: Money,
    video_10s_multiplier: u32,
    video_5s_by_model: BTreeMap<String, Money>,
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
            image_generation,
            image_edit,
            video_5s,
            video_10s_multiplier,
            video_5s_by_model: BTreeMap::new(),
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

    fn validate(&self) -> Result<(), PricingError> {
        if self.image_generation.is_zero() {
            return Err(PricingError::ZeroPrice("IMAGE_GENERATION_PRICE"));
        }
        if self.image_edit.is_zero() {
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

    /// The seed's defaults: image 50 ₽, edit 30 ₽, video 5 s 100 ₽, 10 s × 2.
    #[must_use]
    pub fn seed_defaults() -> Self {
        Self {
            image_generation: Money::from_kopecks(5_000).unwrap_or(Money::ZERO),
            image_edit: Money::from_kopecks(3_000).unwrap_or(Money::ZERO),
            video_5s: Money::from_kopecks(10_000).unwrap_or(Money::ZERO),
            video_10s_multiplier: 2,
            video_5s_by_model: BTreeMap::new(),
        }
    }

    /// The price of a product. Never zero, never overflows (checked at construction).
    #[must_use]
    pub fn price(&self, product: &Product) -> Money {
        match product {
            Product::ImageGeneration => self.image_generation,
            Product::ImageEdit => self.image_edit,
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
        assert_eq!(p.price(&Product::ImageGeneration), rub("50"));
        assert_eq!(p.price(&Product::ImageEdit), rub("30"));
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
        let q = old.quote(Product::ImageEdit);
        let _new = PriceList::new(rub("1"), rub("99"), rub("1"), 2).unwrap();
        assert_eq!(q.amount, rub("30"));
    }

    #[test]
    fn video_to_video_is_priced_by_source_length() {
        assert_eq!(VideoDuration::for_source_millis(3_000), VideoDuration::Five);
        assert_eq!(VideoDuration::for_source_millis(5_000), VideoDuration::Five);
        assert_eq!(VideoDuration::for_source_millis(5_001), VideoDuration::Ten);
    }
}
