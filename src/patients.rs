//! Patient records from ops: the checks every record passes (from the API or a CSV
//! import), and the CSV import with its report of rejected rows.
//!
//! The CSV has a header row naming columns as the record's fields (`phone`, `name`,
//! `age`, `sex`, `visits`, `visits_last_year`, `last_visit`, `last_doctor`,
//! `next_appointment`, `cost_band`, `tags`, `allergies`, `last_complaint`,
//! `complaint_status`, `preferred_language`, `preferred_contact_time`, `notes`), any order;
//! `phone`, `name` and `age` are required, the rest may be left out or empty. `tags` are
//! separated by `;`. A row that fails a check is reported with its line and the reason and
//! imports nothing; the good rows are imported together.

use std::io::Read;

use chrono::{NaiveDate, NaiveDateTime};

use crate::storage::{Patient, Storage, StorageError};

/// Every column the import knows.
pub const COLUMNS: [&str; 17] = [
    "phone",
    "name",
    "age",
    "sex",
    "visits",
    "visits_last_year",
    "last_visit",
    "last_doctor",
    "next_appointment",
    "cost_band",
    "tags",
    "allergies",
    "last_complaint",
    "complaint_status",
    "preferred_language",
    "preferred_contact_time",
    "notes",
];

/// Why a record is refused: the field and what is wrong, in words for ops.
pub fn check(p: &Patient) -> Result<(), String> {
    let phone = p.phone.strip_prefix('+').unwrap_or(&p.phone);
    if !(5..=20).contains(&phone.len()) || !phone.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "phone {:?}: 5 to 20 digits, optionally after a +",
            crate::pii::mask_phone(&p.phone)
        ));
    }
    if p.name.trim().is_empty() || p.name.chars().count() > 100 {
        return Err("name: 1 to 100 characters".into());
    }
    if p.age > 150 {
        return Err(format!("age {}: 0 to 150", p.age));
    }
    let one_of = |field: &str, value: &Option<String>, allowed: &[&str]| match value {
        Some(v) if !allowed.contains(&v.as_str()) => {
            Err(format!("{field} {v:?}: one of {}", allowed.join(", ")))
        }
        _ => Ok(()),
    };
    one_of("sex", &p.sex, &["female", "male", "other"])?;
    one_of("cost_band", &p.cost_band, &["low", "medium", "high"])?;
    one_of(
        "complaint_status",
        &p.complaint_status,
        &["open", "in_progress", "resolved"],
    )?;
    one_of("preferred_language", &p.preferred_language, &["zh", "en"])?;
    if let Some(d) = &p.last_visit
        && NaiveDate::parse_from_str(d, "%Y-%m-%d").is_err()
    {
        return Err(format!("last_visit {d:?}: a date, YYYY-MM-DD"));
    }
    if let Some(t) = &p.next_appointment
        && NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M").is_err()
    {
        return Err(format!(
            "next_appointment {t:?}: a local date and time, YYYY-MM-DD HH:MM"
        ));
    }
    if let (Some(all), Some(last_year)) = (p.visits, p.visits_last_year)
        && last_year > all
    {
        return Err(format!(
            "visits_last_year {last_year}: more than visits ({all})"
        ));
    }
    let long = [
        ("last_doctor", &p.last_doctor, 100),
        ("allergies", &p.allergies, 500),
        ("last_complaint", &p.last_complaint, 1000),
        ("preferred_contact_time", &p.preferred_contact_time, 100),
        ("notes", &p.notes, 2000),
    ];
    for (field, value, max) in long {
        if value.as_ref().is_some_and(|v| v.chars().count() > max) {
            return Err(format!("{field}: at most {max} characters"));
        }
    }
    if p.tags.len() > 20
        || p.tags
            .iter()
            .any(|t| t.is_empty() || t.chars().count() > 40)
    {
        return Err("tags: at most 20, each 1 to 40 characters".into());
    }
    Ok(())
}

/// A refused row: its line in the file and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub line: u64,
    pub reason: String,
}

/// What an import did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub imported: usize,
    pub rejected: Vec<Rejected>,
}

/// Why an import could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("the header row: {0}")]
    Header(String),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
}

/// Reads patient records from CSV and stores the good ones (all in one transaction).
pub fn import(storage: &Storage, csv: impl Read) -> Result<Report, ImportError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(csv);
    let header = reader
        .headers()
        .map_err(|e| ImportError::Header(e.to_string()))?
        .clone();
    let mut index = Vec::with_capacity(header.len());
    for name in &header {
        let Some(i) = COLUMNS.iter().position(|c| *c == name) else {
            return Err(ImportError::Header(format!(
                "unknown column {name:?} (known: {})",
                COLUMNS.join(", ")
            )));
        };
        if index.contains(&i) {
            return Err(ImportError::Header(format!("column {name:?} twice")));
        }
        index.push(i);
    }
    for required in ["phone", "name", "age"] {
        if !header.iter().any(|h| h == required) {
            return Err(ImportError::Header(format!("no {required:?} column")));
        }
    }
    let mut report = Report::default();
    let mut good: Vec<Patient> = Vec::new();
    let mut seen = std::collections::HashMap::new();
    for row in reader.records() {
        let row = match row {
            Ok(row) => row,
            Err(e) => {
                let line = e.position().map_or(0, csv::Position::line);
                report.rejected.push(Rejected {
                    line,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        let line = row.position().map_or(0, csv::Position::line);
        let parsed = patient_of(&index, &row).and_then(|p| check(&p).map(|()| p));
        match parsed {
            Ok(p) => {
                if let Some(first) = seen.insert(p.phone.clone(), line) {
                    report.rejected.push(Rejected {
                        line,
                        reason: format!("phone already on line {first}"),
                    });
                    continue;
                }
                good.push(p);
            }
            Err(reason) => report.rejected.push(Rejected { line, reason }),
        }
    }
    storage.put_patients(&good)?;
    report.imported = good.len();
    Ok(report)
}

/// One row as a record (`index[i]`: which field column `i` holds).
fn patient_of(index: &[usize], row: &csv::StringRecord) -> Result<Patient, String> {
    let mut p = Patient::default();
    for (i, value) in row.iter().enumerate() {
        let Some(&field) = index.get(i) else { continue };
        let text = (!value.is_empty()).then(|| value.to_owned());
        let number = |name: &str| {
            text.as_deref()
                .map(|v| {
                    v.parse::<u32>()
                        .map_err(|_| format!("{name} {v:?}: a whole number"))
                })
                .transpose()
        };
        match COLUMNS[field] {
            "phone" => p.phone = value.to_owned(),
            "name" => p.name = value.to_owned(),
            "age" => p.age = number("age")?.ok_or("age: required")?,
            "sex" => p.sex = text,
            "visits" => p.visits = number("visits")?,
            "visits_last_year" => p.visits_last_year = number("visits_last_year")?,
            "last_visit" => p.last_visit = text,
            "last_doctor" => p.last_doctor = text,
            "next_appointment" => p.next_appointment = text,
            "cost_band" => p.cost_band = text,
            "tags" => {
                p.tags = value
                    .split(';')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned)
                    .collect()
            }
            "allergies" => p.allergies = text,
            "last_complaint" => p.last_complaint = text,
            "complaint_status" => p.complaint_status = text,
            "preferred_language" => p.preferred_language = text,
            "preferred_contact_time" => p.preferred_contact_time = text,
            _ => p.notes = text,
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "phone,name,age,sex,tags,last_visit,next_appointment,cost_band,visits,visits_last_year\n\
        13900000001,Demo Patient One,41,female,diabetes; orthodontics,2026-11-20,2026-12-10 09:30,medium,12,4\n\
        13900000002,Demo Patient Two,abc,male,,,,,,\n\
        12,Demo Short Phone,30,,,,,,,\n\
        13900000003,Demo Patient Three,70,,,20-11-2026,,,,\n\
        13900000004,Demo Patient Four,9,child,,,,,,\n\
        13900000001,Demo Duplicate,50,,,,,,,\n\
        +8613900000005,Demo Patient Five,33,,,,,luxury,,\n\
        13900000006,Demo Patient Six,22,,,,,,3,5\n\
        13900000007,,22,,,,,,,\n\
        13900000008,Demo Patient Eight,22,other,,,2026-13-01 09:00,,,\n";

    #[test]
    fn good_rows_are_imported_and_every_bad_one_is_reported_with_its_line_and_reason() {
        let storage = Storage::open(":memory:").expect("storage");
        let report = import(&storage, CSV.as_bytes()).expect("import runs");
        assert_eq!(report.imported, 1, "{report:?}");
        let lines: Vec<u64> = report.rejected.iter().map(|r| r.line).collect();
        assert_eq!(lines, [3, 4, 5, 6, 7, 8, 9, 10, 11], "{report:?}");
        let says = |line: u64| {
            report
                .rejected
                .iter()
                .find(|r| r.line == line)
                .map(|r| r.reason.clone())
                .unwrap_or_default()
        };
        assert!(says(3).contains("age \"abc\""), "{}", says(3));
        assert!(says(4).contains("phone"), "{}", says(4));
        assert!(
            !says(4).contains("12\""),
            "the number is masked in the report"
        );
        assert!(says(5).contains("last_visit"), "{}", says(5));
        assert!(says(6).contains("sex \"child\""), "{}", says(6));
        assert!(says(7).contains("already on line 2"), "{}", says(7));
        assert!(says(8).contains("cost_band"), "{}", says(8));
        assert!(says(9).contains("visits_last_year"), "{}", says(9));
        assert!(says(10).contains("name"), "{}", says(10));
        assert!(says(11).contains("next_appointment"), "{}", says(11));
        let p = storage
            .patient_by_phone("13900000001")
            .expect("read")
            .expect("imported");
        assert_eq!(p.name, "Demo Patient One");
        assert_eq!(p.tags, ["diabetes", "orthodontics"]);
        assert_eq!(p.visits_last_year, Some(4));
        assert_eq!(p.next_appointment.as_deref(), Some("2026-12-10 09:30"));
        assert_eq!(
            storage.patient_by_phone("13900000002").expect("read"),
            None,
            "a bad row imports nothing"
        );
    }

    #[test]
    fn a_header_the_import_does_not_know_stops_it_before_anything_is_written() {
        let storage = Storage::open(":memory:").expect("storage");
        for (csv, says) in [
            (
                "phone,name,age,shoe_size\n13900000001,A,1,42\n",
                "unknown column \"shoe_size\"",
            ),
            ("phone,name\n13900000001,A\n", "no \"age\" column"),
            ("phone,name,age,name\n1,A,1,B\n", "column \"name\" twice"),
        ] {
            let e = import(&storage, csv.as_bytes()).expect_err("refused");
            assert!(e.to_string().contains(says), "{e}");
        }
        assert_eq!(storage.patient_by_phone("13900000001").expect("read"), None);
    }

    #[test]
    fn a_row_with_the_wrong_number_of_fields_is_reported_not_fatal() {
        let storage = Storage::open(":memory:").expect("storage");
        let csv = "phone,name,age\n13900000001,A,1\n13900000002,B\n13900000003,C,3\n";
        let report = import(&storage, csv.as_bytes()).expect("import runs");
        assert_eq!(report.imported, 2);
        assert_eq!(report.rejected.len(), 1);
        assert_eq!(report.rejected[0].line, 3, "{report:?}");
    }
}
