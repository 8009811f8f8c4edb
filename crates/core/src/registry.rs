//! A client for a Confluent-compatible Schema Registry (the REST API that Confluent Schema
//! Registry, Apicurio and Redpanda serve): register a subject's schema, fetch a schema by id.

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("schema registry request to {url} failed: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("schema registry answered {status} for {url}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
}

pub struct SchemaRegistry {
    base_url: String,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct IdResponse {
    id: u32,
}

#[derive(Deserialize)]
struct SchemaResponse {
    schema: String,
}

impl SchemaRegistry {
    pub fn new(base_url: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("a TLS backend is compiled in");
        SchemaRegistry {
            base_url: base_url.trim_end_matches('/').to_owned(),
            http,
        }
    }

    /// Registers `schema` under `subject` (idempotent: the registry returns the existing id).
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let url = format!("{}/subjects/{subject}/versions", self.base_url);
        let body = serde_json::json!({ "schemaType": "AVRO", "schema": schema });
        let response: IdResponse = self.send(self.http.post(&url).json(&body), &url).await?;
        Ok(response.id)
    }

    /// The schema with the given global id.
    pub async fn schema_by_id(&self, id: u32) -> Result<String, RegistryError> {
        let url = format!("{}/schemas/ids/{id}", self.base_url);
        let response: SchemaResponse = self.send(self.http.get(&url), &url).await?;
        Ok(response.schema)
    }

    async fn send<R: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<R, RegistryError> {
        let http_error = |source| RegistryError::Http {
            url: url.to_owned(),
            source,
        };
        let response = request
            .header("Content-Type", "application/vnd.schemaregistry.v1+json")
            .send()
            .await
            .map_err(http_error)?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(RegistryError::Status {
                url: url.to_owned(),
                status: status.as_u16(),
                body,
            });
        }
        response.json().await.map_err(http_error)
    }
}
