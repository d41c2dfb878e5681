//! Double-blind QA scoring: several reviewers score a call; outliers are dropped.

/// The mean after dropping ONE highest and ONE lowest score.
///
/// `None` with fewer than three scores, or if any score is NaN or infinite.
pub fn double_blind_score(scores: &[f64]) -> Option<f64> {
    if scores.len() < 3 || scores.iter().any(|score| !score.is_finite()) {
        return None;
    }
    let (mut lowest, mut highest, mut sum) = (f64::INFINITY, f64::NEG_INFINITY, 0.0);
    for &score in scores {
        lowest = lowest.min(score);
        highest = highest.max(score);
        sum += score;
    }
    Some((sum - lowest - highest) / (scores.len() - 2) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: Option<f64>, expected: f64) {
        let actual = actual.expect("a score");
        assert!((actual - expected).abs() < 1e-9, "{actual} != {expected}");
    }

    #[test]
    fn three_scores_leave_the_middle_one() {
        close(double_blind_score(&[3.0, 9.0, 4.0]), 4.0);
    }

    #[test]
    fn one_outlier_each_side_is_dropped() {
        // Drop 1 and 100; mean of 2, 3, 4 is 3.
        close(double_blind_score(&[100.0, 2.0, 1.0, 4.0, 3.0]), 3.0);
        // Drop 60 and 95; mean of 80, 85, 90 is 85.
        close(double_blind_score(&[80.0, 60.0, 90.0, 95.0, 85.0]), 85.0);
    }

    #[test]
    fn only_one_copy_of_a_repeated_extreme_is_dropped() {
        // Drop one 7 and the 1: 7 remains.
        close(double_blind_score(&[7.0, 1.0, 7.0]), 7.0);
        // Drop one 10 and the 0: mean of 10, 10 is 10.
        close(double_blind_score(&[0.0, 10.0, 10.0, 10.0]), 10.0);
        close(double_blind_score(&[5.0, 5.0, 5.0, 5.0]), 5.0);
        // Drop 2 and 9: mean of 2, 4, 9 is 5.
        close(double_blind_score(&[2.0, 2.0, 4.0, 9.0, 9.0]), 5.0);
    }

    #[test]
    fn fractional_and_negative_scores_work() {
        // Drop -1 and 4.5: mean of 2.5 and 3 is 2.75.
        close(double_blind_score(&[2.5, -1.0, 4.5, 3.0]), 2.75);
    }

    #[test]
    fn too_few_scores_give_none() {
        assert_eq!(double_blind_score(&[]), None);
        assert_eq!(double_blind_score(&[5.0]), None);
        assert_eq!(double_blind_score(&[5.0, 6.0]), None);
    }

    #[test]
    fn non_finite_scores_give_none() {
        assert_eq!(double_blind_score(&[1.0, f64::NAN, 3.0, 4.0]), None);
        assert_eq!(double_blind_score(&[1.0, 2.0, f64::INFINITY]), None);
        assert_eq!(double_blind_score(&[f64::NEG_INFINITY, 2.0, 3.0]), None);
    }
}
