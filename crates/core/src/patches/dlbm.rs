//! 三调 land classes (DLBM codes): names for the codes a baseline may lack names for, and the
//! groups the categories need (cropland, village land).
//!
//! Codes and names follow TD/T 1055-2019 (三调工作分类) as collected in
//! `shared/notes/domain-weipian.md` §2.2. Older 二调 codes (111, 113, …) are not mapped: a
//! baseline using them gets no built-in names and no cropland, which the overlay warns about.

/// `(code, name)` for the 三调 second-level classes, including the K (可调整) and A variants.
pub const DLBM_NAMES: &[(&str, &str)] = &[
    ("0101", "水田"),
    ("0102", "水浇地"),
    ("0103", "旱地"),
    ("0201", "果园"),
    ("0201K", "可调整果园"),
    ("0202", "茶园"),
    ("0202K", "可调整茶园"),
    ("0203", "橡胶园"),
    ("0203K", "可调整橡胶园"),
    ("0204", "其他园地"),
    ("0204K", "可调整其他园地"),
    ("0301", "乔木林地"),
    ("0301K", "可调整乔木林地"),
    ("0302", "竹林地"),
    ("0302K", "可调整竹林地"),
    ("0303", "红树林地"),
    ("0304", "森林沼泽"),
    ("0305", "灌木林地"),
    ("0306", "灌丛沼泽"),
    ("0307", "其他林地"),
    ("0307K", "可调整其他林地"),
    ("0401", "天然牧草地"),
    ("0402", "沼泽草地"),
    ("0403", "人工牧草地"),
    ("0403K", "可调整人工牧草地"),
    ("0404", "其他草地"),
    ("05H1", "商业服务业设施用地"),
    ("0508", "物流仓储用地"),
    ("0601", "工业用地"),
    ("0602", "采矿用地"),
    ("0603", "盐田"),
    ("0701", "城镇住宅用地"),
    ("0702", "农村宅基地"),
    ("08H1", "机关团体新闻出版用地"),
    ("08H2", "科教文卫用地"),
    ("08H2A", "高教用地"),
    ("0809", "公用设施用地"),
    ("0810", "公园与绿地"),
    ("0810A", "广场用地"),
    ("09", "特殊用地"),
    ("1001", "铁路用地"),
    ("1002", "轨道交通用地"),
    ("1003", "公路用地"),
    ("1004", "城镇村道路用地"),
    ("1005", "交通服务场站用地"),
    ("1006", "农村道路"),
    ("1007", "机场用地"),
    ("1008", "港口码头用地"),
    ("1009", "管道运输用地"),
    ("1101", "河流水面"),
    ("1102", "湖泊水面"),
    ("1103", "水库水面"),
    ("1104", "坑塘水面"),
    ("1104A", "养殖坑塘"),
    ("1104K", "可调整养殖坑塘"),
    ("1105", "沿海滩涂"),
    ("1106", "内陆滩涂"),
    ("1107", "沟渠"),
    ("1107A", "干渠"),
    ("1108", "沼泽地"),
    ("1109", "水工建筑用地"),
    ("1110", "冰川及永久积雪"),
    ("1201", "空闲地"),
    ("1202", "设施农用地"),
    ("1203", "田坎"),
    ("1204", "盐碱地"),
    ("1205", "沙地"),
    ("1206", "裸土地"),
    ("1207", "裸岩石砾地"),
];

/// The built-in name of a 三调 code, if it is one.
pub fn name_of(code: &str) -> Option<&'static str> {
    DLBM_NAMES.iter().find(|(c, _)| *c == code).map(|(_, n)| *n)
}

/// Cropland (耕地): 0101 水田, 0102 水浇地, 0103 旱地.
pub fn is_cropland(code: &str) -> bool {
    matches!(code, "0101" | "0102" | "0103")
}

/// Village land: 0702 农村宅基地 by class, or a parcel whose 城镇村属性码 (CZCSXM) is 203
/// 村庄 / 203A. 0701 城镇住宅用地 is town housing, not a village, so it does not count.
pub fn is_village(code: &str, czcsxm: Option<&str>) -> bool {
    code == "0702" || matches!(czcsxm.map(str::trim), Some("203" | "203A"))
}

/// Whether `code` looks like a land-class code at all (ASCII letters/digits, 2–6 long): text
/// that fails this is a wrong field or a broken encoding, not a class.
pub fn looks_like_code(code: &str) -> bool {
    (2..=6).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Whether a layer's DLBM values lost their leading zeros: stored as numbers (a spreadsheet
/// round trip turns `0101` into `101`), or as text without them. 三调 codes made of digits
/// alone have four digits (or are `09`), so a three-digit value can only be a damaged 三调 code
/// or an old 二调 code such as `011`; 二调 text keeps its own leading zeros, so a text layer
/// whose three-digit values all start with another digit lost them.
pub fn lost_leading_zeros(stored_as_number: bool, codes: &[&str]) -> bool {
    if stored_as_number {
        return true;
    }
    let three_digits = || codes.iter().filter(|c| c.len() == 3 && is_digits(c));
    three_digits().next().is_some() && three_digits().all(|c| !c.starts_with('0'))
}

/// A DLBM value as the 三调 code it stands for: trimmed; when the layer lost its leading zeros
/// (see [`lost_leading_zeros`]), a number (`101`, `101.0`, `9`) zero-padded back to `0101`,
/// `09`. Anything else is returned trimmed, as is.
pub fn normalise(raw: &str, lost_zeros: bool) -> String {
    let code = raw.trim();
    let code = code.strip_suffix(".0").filter(|c| is_digits(c)).unwrap_or(code);
    if !lost_zeros || !is_digits(code) || name_of(code).is_some() {
        return code.to_string();
    }
    let padded = match code.len() {
        1 => format!("0{code}"),
        2 | 3 => format!("{code:0>4}"),
        _ => return code.to_string(),
    };
    if name_of(&padded).is_some() {
        padded
    } else {
        code.to_string()
    }
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_stored_as_numbers_get_their_zeros_back() {
        assert_eq!(normalise("101", true), "0101");
        assert_eq!(normalise(" 103.0 ", true), "0103");
        assert_eq!(normalise("9", true), "09");
        assert_eq!(normalise("1203", true), "1203");
        assert_eq!(normalise("05H1", true), "05H1");
        // Not a 三调 code once padded either: left for the caller to report.
        assert_eq!(normalise("11", true), "11");
        assert_eq!(normalise("101", false), "101");
    }

    #[test]
    fn which_layers_lost_their_zeros() {
        assert!(lost_leading_zeros(true, &["0101"]));
        assert!(lost_leading_zeros(false, &["101", "1001", "0301"]));
        // 二调 text keeps its zeros: 011 水田, 101 铁路用地.
        assert!(!lost_leading_zeros(false, &["011", "101"]));
        assert!(!lost_leading_zeros(false, &["0101", "1203"]));
    }

    #[test]
    fn cropland_village_and_names() {
        assert!(is_cropland("0101") && is_cropland("0103") && !is_cropland("0201"));
        assert!(is_village("0702", None) && is_village("0601", Some("203A")) && !is_village("0701", None));
        assert_eq!(name_of("0102"), Some("水浇地"));
        assert_eq!(name_of("111"), None);
        assert!(looks_like_code("05H1") && !looks_like_code("水田") && !looks_like_code(""));
    }
}
