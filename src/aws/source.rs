//! Where a token comes from: ECR Public (us-east-1 only), or Amazon ECR private registries in one
//! region. A token is per IAM identity *and* source: one ECR Public token, and one private token
//! per region (it covers every registry of that region the identity may read). Pure.

use std::fmt;

use super::ECR_PUBLIC_REGION;

/// One token source.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// ECR Public `GetAuthorizationToken` (service `ecr-public`, us-east-1).
    Public,
    /// Amazon ECR `GetAuthorizationToken` (service `ecr`) in `region`.
    Private { region: String },
}

impl Source {
    /// A private registry region's source.
    pub fn private(region: &str) -> Self {
        Source::Private {
            region: region.to_owned(),
        }
    }

    /// The IAM service prefix (and SigV4 signing name) of its API.
    pub fn service(&self) -> &'static str {
        match self {
            Source::Public => "ecr-public",
            Source::Private { .. } => "ecr",
        }
    }

    /// The region its API is called in.
    pub fn region(&self) -> &str {
        match self {
            Source::Public => ECR_PUBLIC_REGION,
            Source::Private { region } => region,
        }
    }

    /// Its key in the Secret's `sources` annotation: `ecr-public` or `ecr/<region>`.
    pub fn key(&self) -> String {
        match self {
            Source::Public => "ecr-public".to_owned(),
            Source::Private { region } => format!("ecr/{region}"),
        }
    }

    /// The inverse of [`Source::key`]; `None` for anything else.
    pub fn from_key(key: &str) -> Option<Self> {
        match key.split_once('/') {
            None if key == "ecr-public" => Some(Source::Public),
            Some(("ecr", region)) if !region.is_empty() => Some(Source::private(region)),
            _ => None,
        }
    }
}

/// How users read it in conditions and logs: `ECR Public`, `ECR us-west-2`.
impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Public => f.write_str("ECR Public"),
            Source::Private { region } => write!(f, "ECR {region}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_nothing_else_parses() {
        for source in [Source::Public, Source::private("eu-west-1")] {
            assert_eq!(Source::from_key(&source.key()), Some(source));
        }
        for bad in [
            "",
            "ecr",
            "ecr/",
            "public",
            "ecr-public/us-east-1",
            "s3/us-east-1",
        ] {
            assert_eq!(Source::from_key(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn public_is_pinned_to_us_east_1_and_sorts_first() {
        assert_eq!(Source::Public.region(), "us-east-1");
        assert_eq!(Source::Public.service(), "ecr-public");
        assert_eq!(Source::private("cn-north-1").service(), "ecr");
        assert!(Source::Public < Source::private("af-south-1"));
        assert_eq!(Source::private("us-west-2").to_string(), "ECR us-west-2");
    }
}
