//! Merging the Parquet files of one folder: their rows, in input order, written again as
//! files of about the target size with the lake's writer settings. CPU only, no IO.

use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::io::lake;
use crate::{Error, Result};

/// Rows per batch read from the inputs.
const BATCH_ROWS: usize = 64 * 1024;

/// The merged files and what went into them.
#[derive(Debug)]
pub struct Merged {
    pub files: Vec<Vec<u8>>,
    pub rows: u64,
}

/// Merges `inputs` (`(path, Parquet bytes)`) into files of about `target` bytes each. Inputs
/// whose columns differ from the first one's are an error that names the file: the folder is
/// then left as it is.
pub fn merge(inputs: &[(String, Bytes)], target: u64) -> Result<Merged> {
    let err = |path: &str, e: &dyn std::fmt::Display| Error::Parquet(format!("{path}: {e}"));
    let mut files = Vec::new();
    let mut rows = 0u64;
    let mut schema = None;
    let mut writer: Option<ArrowWriter<Vec<u8>>> = None;
    for (path, bytes) in inputs {
        let b =
            ParquetRecordBatchReaderBuilder::try_new(bytes.clone()).map_err(|e| err(path, &e))?;
        let s = b.schema().clone();
        match &schema {
            None => schema = Some(s.clone()),
            Some(first) if first.fields() != s.fields() => {
                return Err(err(
                    path,
                    &"its columns differ from the other files of the folder; the folder is left as it is",
                ));
            }
            Some(_) => {}
        }
        let reader = b
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(|e| err(path, &e))?;
        for batch in reader {
            let batch = batch.map_err(|e| err(path, &e))?;
            rows += batch.num_rows() as u64;
            let w = match &mut writer {
                Some(w) => w,
                None => writer.insert(
                    ArrowWriter::try_new(Vec::new(), s.clone(), Some(lake::writer_props(&s)?))
                        .map_err(|e| err(path, &e))?,
                ),
            };
            w.write(&batch).map_err(|e| err(path, &e))?;
            if (w.bytes_written() + w.in_progress_size()) as u64 >= target
                && let Some(w) = writer.take()
            {
                files.push(w.into_inner().map_err(|e| err(path, &e))?);
            }
        }
    }
    if let Some(w) = writer {
        files.push(w.into_inner().map_err(|e| Error::Parquet(e.to_string()))?);
    }
    Ok(Merged { files, rows })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int64Array, RecordBatch, StringArray};
    use arrow_schema::{DataType, Field, Schema};

    use super::*;

    fn file(from: i64, n: i64, extra: bool) -> (String, Bytes) {
        let mut fields = vec![Field::new("id", DataType::Int64, false)];
        let mut cols: Vec<arrow_array::ArrayRef> =
            vec![Arc::new(Int64Array::from_iter_values(from..from + n))];
        if extra {
            fields.push(Field::new("name", DataType::Utf8, false));
            cols.push(Arc::new(StringArray::from_iter_values(
                (from..from + n).map(|i| format!("p{i}")),
            )));
        }
        let b = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap();
        (
            format!("f{from}"),
            Bytes::from(lake::parquet_bytes(&[b]).unwrap()),
        )
    }

    fn ids(files: &[Vec<u8>]) -> Vec<i64> {
        let mut out = vec![];
        for f in files {
            let r = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(f.clone()))
                .unwrap()
                .build()
                .unwrap();
            for b in r {
                let b = b.unwrap();
                let c = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
                out.extend(c.values().iter().copied());
            }
        }
        out
    }

    #[test]
    fn rows_keep_their_order_and_every_row_is_kept_once() {
        let inputs = vec![
            file(0, 10, false),
            file(10, 5, false),
            file(15, 0, false),
            file(15, 100, false),
        ];
        let m = merge(&inputs, 1 << 30).unwrap();
        assert_eq!(m.files.len(), 1);
        assert_eq!(m.rows, 115);
        assert_eq!(ids(&m.files), (0..115).collect::<Vec<_>>());
    }

    #[test]
    fn a_small_target_splits_the_output() {
        let inputs: Vec<_> = (0..20).map(|i| file(i * 70_000, 70_000, false)).collect();
        let m = merge(&inputs, 64 * 1024).unwrap();
        assert!(m.files.len() > 1, "{} files", m.files.len());
        assert_eq!(ids(&m.files), (0..1_400_000).collect::<Vec<_>>());
    }

    #[test]
    fn different_columns_are_refused_by_name() {
        let e = merge(&[file(0, 3, false), file(3, 3, true)], 1 << 30).unwrap_err();
        assert!(e.to_string().contains("f3: its columns differ"), "{e}");
    }
}
