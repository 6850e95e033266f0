//! Figures as a table (for people) and as JSON (for tools).

use serde_json::{Map, Value};

pub struct Report {
    pub scenario: &'static str,
    rows: Vec<(String, Value)>,
}

impl Report {
    pub fn new(scenario: &'static str) -> Report {
        Report {
            scenario,
            rows: Vec::new(),
        }
    }

    pub fn add(&mut self, name: &str, value: impl Into<Value>) {
        self.rows.push((name.to_string(), value.into()));
    }

    pub fn print_table(&self) {
        println!("\n{}", self.scenario);
        let width = self.rows.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
        for (name, value) in &self.rows {
            let shown = match value {
                Value::Number(n) if n.is_f64() => format!("{:.3}", n.as_f64().unwrap_or_default()),
                other => other.to_string().trim_matches('"').to_string(),
            };
            println!("  {name:<width$}  {shown}");
        }
    }

    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("scenario".into(), self.scenario.into());
        for (name, value) in &self.rows {
            map.insert(name.clone(), value.clone());
        }
        Value::Object(map)
    }
}
