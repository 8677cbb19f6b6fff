//! The static tables the generator draws from: names, regions and facilities, diagnoses
//! (ICD-10 with Russian displays), laboratory tests and vital signs (LOINC + UCUM),
//! medicines (ATC), vaccines of the national calendar, procedures and allergens (SNOMED CT).
//! Kept one entry per line (the module is not rustfmt-ed) so that it reads as a table.

/// Medical specialties of the practitioners (index into [`SPECS`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Spec { Therapist, Pediatrician, Cardiologist, Endocrinologist, Neurologist, Psychotherapist, Surgeon, Obstetrician,
    /// The patient's own doctor: a pediatrician for children, a therapist for adults.
    Primary }

/// Per specialty: qualification, specialty text, SNOMED CT practice setting and its display,
/// and the genitive used in visit names ("приём врача-терапевта").
pub const SPECS: [(&str, &str, &str, &str, &str); 8] = [
    ("Врач-терапевт", "терапевт", "419192003", "Internal medicine", "врача-терапевта"),
    ("Врач-педиатр", "педиатр", "394537008", "Pediatric specialty", "врача-педиатра"),
    ("Врач-кардиолог", "кардиолог", "394579002", "Cardiology", "врача-кардиолога"),
    ("Врач-эндокринолог", "эндокринолог", "394583002", "Endocrinology", "врача-эндокринолога"),
    ("Врач-невролог", "невролог", "394591006", "Neurology", "врача-невролога"),
    ("Врач-психотерапевт", "психотерапевт", "394587001", "Psychiatry", "врача-психотерапевта"),
    ("Врач-хирург", "хирург", "394609007", "General surgery", "врача-хирурга"),
    ("Врач-акушер-гинеколог", "акушер-гинеколог", "394585009", "Obstetrics and gynecology", "врача-акушера-гинеколога"),
];

/// The ten doctors of each region: specialty, works at the hospital, also holds a role at the other facility.
pub const STAFF: [(Spec, bool, bool); 10] = [
    (Spec::Therapist, false, true), (Spec::Therapist, false, false), (Spec::Pediatrician, false, true),
    (Spec::Pediatrician, false, false), (Spec::Cardiologist, false, true), (Spec::Endocrinologist, false, false),
    (Spec::Neurologist, false, true), (Spec::Psychotherapist, false, false), (Spec::Surgeon, true, false),
    (Spec::Obstetrician, true, true),
];

/// A region: name, city, OKATO code (first digits of OMS policy numbers), subject code (in
/// facility OIDs), telephone code, postal codes, share of patients, districts, streets, and
/// its polyclinic, hospital and laboratory (name, address).
pub struct Region {
    pub state: &'static str,
    pub city: &'static str,
    pub okato: &'static str,
    pub subject: u32,
    pub phone: &'static str,
    pub postal: (i64, i64),
    pub weight: f64,
    pub districts: &'static [&'static str],
    pub streets: &'static [&'static str],
    pub orgs: [(&'static str, &'static str); 3],
}

pub const REGIONS: [Region; 4] = [
    Region { state: "Москва", city: "Москва", okato: "45", subject: 77, phone: "495", postal: (109_000, 129_999), weight: 0.40,
        districts: &["Хамовники", "Басманный", "Марьино", "Тёплый Стан", "Сокольники", "Измайлово", "Митино"],
        streets: &["ул. Профсоюзная", "Ленинский проспект", "ул. Маршала Жукова", "ул. Люблинская", "Каширское шоссе"],
        orgs: [("ГБУЗ «Городская поликлиника № 195 ДЗМ»", "ул. Профсоюзная, д. 154, корп. 3"),
            ("ГБУЗ «Городская клиническая больница № 52 ДЗМ»", "ул. Пехотная, д. 3"),
            ("ГБУЗ «Консультативно-диагностический центр № 4 ДЗМ»", "ул. Миклухо-Маклая, д. 29, корп. 2")] },
    Region { state: "Санкт-Петербург", city: "Санкт-Петербург", okato: "40", subject: 78, phone: "812", postal: (190_000, 199_406), weight: 0.25,
        districts: &["Василеостровский", "Приморский", "Невский", "Калининский", "Московский", "Фрунзенский"],
        streets: &["Невский проспект", "ул. Савушкина", "Гражданский проспект", "Лиговский проспект", "ул. Бухарестская"],
        orgs: [("СПб ГБУЗ «Городская поликлиника № 38»", "ул. Моховая, д. 33"),
            ("СПб ГБУЗ «Городская Мариинская больница»", "Литейный проспект, д. 56"),
            ("СПб ГБУЗ «Диагностический центр № 1»", "ул. Сикейроса, д. 10, лит. Д")] },
    Region { state: "Новосибирская область", city: "Новосибирск", okato: "50", subject: 54, phone: "383", postal: (630_001, 630_133), weight: 0.15,
        districts: &["Центральный", "Ленинский", "Октябрьский", "Советский", "Заельцовский", "Кировский"],
        streets: &["Красный проспект", "ул. Богдана Хмельницкого", "ул. Титова", "ул. Ленина", "ул. Кирова"],
        orgs: [("ГБУЗ НСО «Городская клиническая поликлиника № 1»", "ул. Серебренниковская, д. 42"),
            ("ГБУЗ НСО «Государственная Новосибирская областная клиническая больница»", "ул. Немировича-Данченко, д. 130"),
            ("ГАУЗ НСО «Городской клинический диагностический центр»", "ул. Ядринцевская, д. 68")] },
    Region { state: "Республика Татарстан", city: "Казань", okato: "92", subject: 16, phone: "843", postal: (420_012, 420_140), weight: 0.20,
        districts: &["Вахитовский", "Приволжский", "Советский", "Ново-Савиновский", "Кировский", "Авиастроительный"],
        streets: &["ул. Баумана", "проспект Победы", "ул. Чистопольская", "ул. Пушкина", "ул. Декабристов"],
        orgs: [("ГАУЗ «Городская поликлиника № 21» г. Казани", "проспект Победы, д. 50"),
            ("ГАУЗ «Республиканская клиническая больница МЗ РТ»", "Оренбургский тракт, д. 138"),
            ("ГАУЗ «Республиканский клинический диагностический центр МЗ РТ»", "ул. Карбышева, д. 12а")] },
];

/// Names, space-separated: given names by sex and generation (born before 1970, 1970–1994,
/// from 1995), masculine patronymics and family names (feminine forms are derived).
pub struct Names {
    pub male: [&'static str; 3],
    pub female: [&'static str; 3],
    pub patronymics: &'static str,
    pub surnames: &'static str,
}

pub const RUSSIAN: Names = Names {
    male: ["Владимир Виктор Николай Анатолий Юрий Геннадий Валерий Борис", "Сергей Андрей Алексей Дмитрий Александр Игорь Олег Евгений",
        "Артём Максим Иван Михаил Матвей Кирилл Никита Даниил"],
    female: ["Валентина Галина Людмила Нина Тамара Зинаида Раиса Надежда", "Елена Ольга Татьяна Наталья Ирина Светлана Марина Юлия",
        "Анастасия Дарья София Анна Мария Полина Виктория Алиса"],
    patronymics: "Александрович Сергеевич Владимирович Николаевич Андреевич Викторович Михайлович Иванович Петрович Юрьевич Дмитриевич Алексеевич",
    surnames: "Иванов Смирнов Кузнецов Попов Васильев Петров Соколов Михайлов Новиков Фёдоров Морозов Волков Лебедев Козлов Егоров \
        Павлов Семёнов Голубев Виноградов Богданов Орлов Никитин Соловьёв Белоусов Зайцев Шевченко Ковальчук",
};

pub const TATAR: Names = Names {
    male: ["Ринат Рашид Ильдус Фарид Марат Наиль", "Рустам Ильдар Айрат Радик Альберт Азат", "Тимур Амир Айдар Булат Карим Искандер"],
    female: ["Гульнара Рамиля Фания Зульфия Венера Роза", "Альфия Гузель Лилия Резеда Эльвира Айгуль", "Алсу Лейсан Камила Амина Регина Алина"],
    patronymics: "Ринатович Рашидович Ильдарович Маратович Рустамович Фаритович",
    surnames: "Хабибуллин Сафин Галиев Закиров Гарипов Валиев Ахметов Мухаметшин",
};

/// An ICD-10 diagnosis with its Russian display.
pub type Dx = (&'static str, &'static str);

/// A medicine: ATC code, ATC (English) name, Russian product text, Russian dosage instruction.
pub type Med = (&'static str, &'static str, &'static str, &'static str);

pub const LISINOPRIL: Med = ("C09AA03", "lisinopril", "Лизиноприл, таблетки 10 мг", "По 1 таблетке 1 раз в сутки утром");
pub const AMLODIPINE: Med = ("C08CA01", "amlodipine", "Амлодипин, таблетки 5 мг", "По 1 таблетке 1 раз в сутки");
pub const INDAPAMIDE: Med = ("C03BA11", "indapamide", "Индапамид, таблетки 2,5 мг", "По 1 таблетке 1 раз в сутки утром");
pub const METFORMIN: Med = ("A10BA02", "metformin", "Метформин, таблетки 1000 мг", "По 1 таблетке 2 раза в сутки во время еды");
pub const GLICLAZIDE: Med = ("A10BB09", "gliclazide", "Гликлазид, таблетки 60 мг", "По 1 таблетке 1 раз в сутки во время завтрака");
pub const ATORVASTATIN: Med = ("C10AA05", "atorvastatin", "Аторвастатин, таблетки 20 мг", "По 1 таблетке 1 раз в сутки вечером");
pub const ASPIRIN: Med = ("B01AC06", "acetylsalicylic acid", "Ацетилсалициловая кислота, таблетки 100 мг", "По 1 таблетке 1 раз в сутки после еды");
pub const BISOPROLOL: Med = ("C07AB07", "bisoprolol", "Бисопролол, таблетки 5 мг", "По 1 таблетке 1 раз в сутки утром");
pub const SALBUTAMOL: Med = ("R03AC02", "salbutamol", "Сальбутамол, аэрозоль 100 мкг/доза", "1–2 ингаляции при приступе, не более 8 в сутки");
pub const BUDESONIDE: Med = ("R03BA02", "budesonide", "Будесонид, порошок для ингаляций 200 мкг/доза", "По 1 ингаляции 2 раза в сутки");
pub const OMEPRAZOLE: Med = ("A02BC01", "omeprazole", "Омепразол, капсулы 20 мг", "По 1 капсуле 2 раза в сутки за 30 минут до еды, 4 недели");
pub const SERTRALINE: Med = ("N06AB06", "sertraline", "Сертралин, таблетки 50 мг", "По 1 таблетке 1 раз в сутки утром");
pub const LEVOTHYROXINE: Med = ("H03AA01", "levothyroxine sodium", "Левотироксин натрия, таблетки 50 мкг", "По 1 таблетке утром натощак за 30 минут до еды");
pub const IRON: Med = ("B03AA07", "ferrous sulfate", "Железа сульфат, таблетки 100 мг", "По 1 таблетке 2 раза в сутки, 3 месяца");
pub const SUMATRIPTAN: Med = ("N02CC01", "sumatriptan", "Суматриптан, таблетки 50 мг", "По 1 таблетке при приступе мигрени");
pub const DOLUTEGRAVIR: Med = ("J05AJ03", "dolutegravir", "Долутегравир, таблетки 50 мг", "По 1 таблетке 1 раз в сутки");
pub const LORATADINE: Med = ("R06AX13", "loratadine", "Лоратадин, таблетки 10 мг", "По 1 таблетке 1 раз в сутки в сезон цветения");
pub const AMBROXOL: Med = ("R05CB06", "ambroxol", "Амброксол, таблетки 30 мг", "По 1 таблетке 3 раза в сутки, 7 дней");
pub const AMOXICLAV: Med = ("J01CR02", "amoxicillin and beta-lactamase inhibitor", "Амоксициллин + клавулановая кислота, таблетки 875/125 мг", "По 1 таблетке 2 раза в сутки, 10 дней");
pub const AZITHROMYCIN: Med = ("J01FA10", "azithromycin", "Азитромицин, таблетки 500 мг", "По 1 таблетке 1 раз в сутки, 3 дня");
pub const MELOXICAM: Med = ("M01AC06", "meloxicam", "Мелоксикам, таблетки 7,5 мг", "По 1 таблетке 1 раз в сутки после еды, 10 дней");
pub const FOSFOMYCIN: Med = ("J01XX01", "fosfomycin", "Фосфомицин, гранулы 3 г", "Однократно на ночь, растворив в 1/2 стакана воды");
pub const CLOPIDOGREL: Med = ("B01AC04", "clopidogrel", "Клопидогрел, таблетки 75 мг", "По 1 таблетке 1 раз в сутки, 12 месяцев");

/// A chronic disease: diagnosis, sex (`Some(true)` = women only), prevalence by current age
/// (`(age_below, probability)` steps), follow-up doctor and visits per year, lab panels at
/// follow-ups, medicines (the first always, each further one with probability ½),
/// a sensitivity label, and whether episodes go into remission.
pub struct Chronic {
    pub dx: Dx,
    pub female: Option<bool>,
    pub prevalence: &'static [(u32, f64)],
    pub spec: Spec,
    pub visits: f64,
    pub panels: &'static [&'static Panel],
    pub meds: &'static [Med],
    pub label: Option<&'static str>,
    pub remits: bool,
}

const fn chronic(dx: Dx, female: Option<bool>, prevalence: &'static [(u32, f64)], spec: Spec, visits: f64,
    panels: &'static [&'static Panel], meds: &'static [Med]) -> Chronic {
    Chronic { dx, female, prevalence, spec, visits, panels, meds, label: None, remits: false }
}

pub const OBESITY: usize = 12;
pub const HAY_FEVER: usize = 13;
const W: Option<bool> = Some(true);
const M: Option<bool> = Some(false);

pub static CHRONIC: [Chronic; 14] = [
    chronic(("I10", "Эссенциальная [первичная] гипертензия"), None, &[(25, 0.0), (35, 0.05), (45, 0.15), (55, 0.33), (65, 0.5), (200, 0.62)], Spec::Therapist, 0.5, &[&BIO_SCREEN], &[LISINOPRIL, AMLODIPINE, INDAPAMIDE]),
    chronic(("E11", "Сахарный диабет 2 типа"), None, &[(30, 0.0), (45, 0.03), (55, 0.07), (65, 0.12), (200, 0.16)], Spec::Endocrinologist, 1.2, &[&HBA1C, &BIO_DM], &[METFORMIN, GLICLAZIDE]),
    chronic(("E78.0", "Чистая гиперхолестеринемия"), None, &[(30, 0.0), (45, 0.08), (200, 0.2)], Spec::Therapist, 0.3, &[&BIO_LIPID], &[ATORVASTATIN]),
    chronic(("I25.1", "Атеросклеротическая болезнь сердца"), None, &[(45, 0.0), (55, 0.04), (65, 0.1), (75, 0.2), (200, 0.3)], Spec::Cardiologist, 0.8, &[&BIO_LIPID], &[ASPIRIN, BISOPROLOL, ATORVASTATIN]),
    chronic(("J45.0", "Астма с преобладанием аллергического компонента"), None, &[(3, 0.0), (18, 0.07), (200, 0.05)], Spec::Primary, 1.0, &[], &[SALBUTAMOL, BUDESONIDE]),
    chronic(("K29.5", "Хронический гастрит неуточненный"), None, &[(12, 0.0), (18, 0.02), (200, 0.12)], Spec::Primary, 0.4, &[], &[OMEPRAZOLE]),
    Chronic { label: Some("PSY"), remits: true, ..chronic(("F32.1", "Депрессивный эпизод средней степени"), None, &[(16, 0.0), (200, 0.04)], Spec::Psychotherapist, 2.0, &[], &[SERTRALINE]) },
    chronic(("E03.9", "Гипотиреоз неуточненный"), W, &[(20, 0.0), (40, 0.03), (200, 0.09)], Spec::Endocrinologist, 1.0, &[&TSH_TEST], &[LEVOTHYROXINE]),
    Chronic { remits: true, ..chronic(("D50.9", "Железодефицитная анемия неуточненная"), W, &[(15, 0.0), (50, 0.08), (200, 0.03)], Spec::Primary, 1.0, &[&CBC], &[IRON]) },
    chronic(("G43.9", "Мигрень неуточненная"), W, &[(14, 0.0), (50, 0.12), (200, 0.05)], Spec::Neurologist, 0.3, &[], &[SUMATRIPTAN]),
    Chronic { label: Some("HIV"), ..chronic(("B20", "Болезнь, вызванная вирусом иммунодефицита человека [ВИЧ], проявляющаяся в виде инфекционных и паразитарных болезней"),
        None, &[(18, 0.0), (60, 0.006), (200, 0.002)], Spec::Therapist, 1.5, &[&CBC], &[DOLUTEGRAVIR]) },
    chronic(("N40", "Гиперплазия предстательной железы"), M, &[(50, 0.0), (65, 0.2), (200, 0.4)], Spec::Surgeon, 0.3, &[], &[]),
    // Not drawn by prevalence: obesity follows the body-mass index, hay fever a pollen allergy.
    chronic(("E66.0", "Ожирение, обусловленное избыточным поступлением энергетических ресурсов"), None, &[], Spec::Endocrinologist, 0.3, &[], &[]),
    chronic(("J30.1", "Аллергический ринит, вызванный пыльцой растений"), None, &[], Spec::Primary, 0.3, &[], &[LORATADINE]),
];

/// Where an episode is treated: ambulatory, inpatient, emergency department.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Class { Amb, Imp, Emer }

/// An acute episode: diagnosis, sex, incidence per year by age, the chronic disease (ICD-10)
/// it needs, setting, doctor, stay in days, infectious (fever, inflammatory labs), lab panels,
/// procedure, medicine.
pub struct Acute {
    pub dx: Dx,
    pub female: Option<bool>,
    pub rate: &'static [(u32, f64)],
    pub requires: Option<&'static str>,
    pub class: Class,
    pub spec: Spec,
    pub stay: (i64, i64),
    pub infectious: bool,
    pub panels: &'static [&'static Panel],
    pub procedure: Option<Proc>,
    pub med: Option<Med>,
}

const fn acute(dx: Dx, female: Option<bool>, rate: &'static [(u32, f64)], class: Class, spec: Spec, stay: (i64, i64), infectious: bool) -> Acute {
    Acute { dx, female, rate, requires: None, class, spec, stay, infectious, panels: &[], procedure: None, med: None }
}

const NOW: (i64, i64) = (0, 0);

pub static ACUTE: [Acute; 14] = [
    acute(("J06.9", "Острая инфекция верхних дыхательных путей неуточненная"), None, &[(1, 0.7), (7, 0.9), (18, 0.5), (65, 0.15), (200, 0.1)], Class::Amb, Spec::Primary, NOW, true),
    Acute { med: Some(AMBROXOL), ..acute(("J20.9", "Острый бронхит неуточненный"), None, &[(200, 0.05)], Class::Amb, Spec::Primary, NOW, true) },
    Acute { panels: &[&CBC], med: Some(AMOXICLAV), ..acute(("J18.9", "Пневмония неуточненная"), None, &[(7, 0.02), (60, 0.004), (200, 0.02)], Class::Imp, Spec::Primary, (7, 12), true) },
    acute(("B01.9", "Ветряная оспа без осложнений"), None, &[(1, 0.0), (12, 0.08), (200, 0.0)], Class::Amb, Spec::Primary, NOW, true),
    Acute { med: Some(MELOXICAM), ..acute(("M54.5", "Боль внизу спины"), None, &[(25, 0.0), (200, 0.08)], Class::Amb, Spec::Neurologist, NOW, false) },
    Acute { panels: &[&CBC], med: Some(FOSFOMYCIN), ..acute(("N39.0", "Инфекция мочевыводящих путей без установленной локализации"), W, &[(16, 0.0), (200, 0.04)], Class::Amb, Spec::Primary, NOW, false) },
    acute(("S93.4", "Растяжение и перенапряжение связочного аппарата голеностопного сустава"), None, &[(8, 0.0), (60, 0.015), (200, 0.0)], Class::Emer, Spec::Surgeon, NOW, false),
    acute(("S52.5", "Перелом нижнего конца лучевой кости"), W, &[(55, 0.0), (200, 0.012)], Class::Emer, Spec::Surgeon, NOW, false),
    Acute { panels: &[&CBC], procedure: Some(APPENDECTOMY), ..acute(("K35.8", "Острый аппендицит, другой и неуточненный"), None, &[(7, 0.0), (60, 0.0015), (200, 0.0)], Class::Imp, Spec::Surgeon, (4, 6), false) },
    Acute { requires: Some("I25.1"), panels: &[&CBC, &BIO_FULL], procedure: Some(PCI), med: Some(CLOPIDOGREL),
        ..acute(("I21.9", "Острый инфаркт миокарда неуточненный"), None, &[(200, 0.025)], Class::Imp, Spec::Cardiologist, (10, 14), false) },
    Acute { requires: Some("I10"), panels: &[&CBC, &BIO_FULL], ..acute(("I63.9", "Инфаркт мозга неуточненный"), None, &[(60, 0.0), (200, 0.008)], Class::Imp, Spec::Neurologist, (14, 21), false) },
    Acute { requires: Some("I10"), ..acute(("I10", "Эссенциальная [первичная] гипертензия (гипертонический криз)"), None, &[(200, 0.05)], Class::Emer, Spec::Therapist, NOW, false) },
    Acute { panels: &[&CBC], procedure: Some(DELIVERY), ..acute(("O80", "Роды одноплодные, самопроизвольное родоразрешение"), W, &[(19, 0.0), (40, 0.038), (45, 0.008), (200, 0.0)], Class::Imp, Spec::Obstetrician, (3, 4), false) },
    Acute { panels: &[&CBC], procedure: Some(CESAREAN), ..acute(("O82", "Роды одноплодные, родоразрешение посредством кесарева сечения"), W, &[(19, 0.0), (40, 0.013), (45, 0.004), (200, 0.0)], Class::Imp, Spec::Obstetrician, (5, 7), false) },
];

/// A laboratory test or vital sign: LOINC code and display, Russian name, UCUM code, Russian
/// unit, reference range for men and women (none for vital signs), decimals, usual mean and SD.
pub struct Test {
    pub loinc: &'static str,
    pub en: &'static str,
    pub ru: &'static str,
    pub ucum: &'static str,
    pub unit: &'static str,
    pub lo: [f64; 2],
    pub hi: [f64; 2],
    pub places: usize,
    pub mean: f64,
    pub sd: f64,
}

/// `range`: low (men, women), high (men, women); `dist`: decimals, mean, SD.
const fn test(loinc: &'static str, en: &'static str, ru: &'static str, ucum: &'static str, unit: &'static str, range: [f64; 4], dist: (usize, f64, f64)) -> Test {
    Test { loinc, en, ru, ucum, unit, lo: [range[0], range[1]], hi: [range[2], range[3]], places: dist.0, mean: dist.1, sd: dist.2 }
}

const VITAL: ([f64; 4], (usize, f64, f64)) = ([0.0; 4], (0, 0.0, 0.0));
pub const HEART_RATE: Test = test("8867-4", "Heart rate", "Частота сердечных сокращений", "/min", "уд/мин", VITAL.0, VITAL.1);
pub const TEMPERATURE: Test = test("8310-5", "Body temperature", "Температура тела", "Cel", "°C", VITAL.0, VITAL.1);
pub const WEIGHT: Test = test("29463-7", "Body weight", "Масса тела", "kg", "кг", VITAL.0, VITAL.1);
pub const HEIGHT: Test = test("8302-2", "Body height", "Рост", "cm", "см", VITAL.0, VITAL.1);
pub const BMI: Test = test("39156-5", "Body mass index (BMI) [Ratio]", "Индекс массы тела", "kg/m2", "кг/м²", VITAL.0, VITAL.1);
pub const BP: Test = test("85354-9", "Blood pressure panel with all children optional", "Артериальное давление", "", "", VITAL.0, VITAL.1);
pub const SYSTOLIC: Test = test("8480-6", "Systolic blood pressure", "Систолическое артериальное давление", "mm[Hg]", "мм рт. ст.", VITAL.0, VITAL.1);
pub const DIASTOLIC: Test = test("8462-4", "Diastolic blood pressure", "Диастолическое артериальное давление", "mm[Hg]", "мм рт. ст.", VITAL.0, VITAL.1);

pub const HB: Test = test("718-7", "Hemoglobin [Mass/volume] in Blood", "Гемоглобин", "g/L", "г/л", [130.0, 120.0, 160.0, 140.0], (0, 138.0, 9.0));
pub const WBC: Test = test("6690-2", "Leukocytes [#/volume] in Blood by Automated count", "Лейкоциты", "10*9/L", "×10⁹/л", [4.0, 4.0, 9.0, 9.0], (1, 6.3, 1.2));
pub const PLT: Test = test("777-3", "Platelets [#/volume] in Blood by Automated count", "Тромбоциты", "10*9/L", "×10⁹/л", [180.0, 180.0, 320.0, 320.0], (0, 250.0, 35.0));
pub const ESR: Test = test("30341-2", "Erythrocyte sedimentation rate", "Скорость оседания эритроцитов (СОЭ)", "mm/h", "мм/ч", [1.0, 2.0, 10.0, 15.0], (0, 7.0, 3.0));
pub const GLUCOSE: Test = test("14749-6", "Glucose [Moles/volume] in Serum or Plasma", "Глюкоза", "mmol/L", "ммоль/л", [3.9, 3.9, 6.1, 6.1], (1, 5.0, 0.5));
pub const CHOLESTEROL: Test = test("14647-2", "Cholesterol [Moles/volume] in Serum or Plasma", "Холестерин общий", "mmol/L", "ммоль/л", [3.0, 3.0, 5.2, 5.2], (1, 4.6, 0.7));
pub const CREATININE: Test = test("14682-9", "Creatinine [Moles/volume] in Serum or Plasma", "Креатинин", "umol/L", "мкмоль/л", [62.0, 53.0, 115.0, 97.0], (0, 80.0, 12.0));
pub const ALT: Test = test("1742-6", "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma", "Аланинаминотрансфераза (АЛТ)", "U/L", "Ед/л", [5.0, 5.0, 41.0, 33.0], (0, 20.0, 6.0));
pub const HBA1C_TEST: Test = test("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "Гликированный гемоглобин (HbA1c)", "%", "%", [4.0, 4.0, 6.0, 6.0], (1, 5.3, 0.35));
pub const TSH: Test = test("3016-3", "Thyrotropin [Units/volume] in Serum or Plasma", "Тиреотропный гормон (ТТГ)", "m[IU]/L", "мМЕ/л", [0.4, 0.4, 4.0, 4.0], (2, 1.8, 0.7));

/// A laboratory report: LOINC code and display, Russian name, the tests it contains.
pub struct Panel {
    pub loinc: &'static str,
    pub en: &'static str,
    pub ru: &'static str,
    pub tests: &'static [&'static Test],
}

const CMP: (&str, &str, &str) = ("24323-8", "Comprehensive metabolic 2000 panel - Serum or Plasma", "Биохимический анализ крови");
pub static CBC: Panel = Panel { loinc: "58410-2", en: "CBC panel - Blood by Automated count", ru: "Общий (клинический) анализ крови", tests: &[&HB, &WBC, &PLT, &ESR] };
/// The blood count of check-ups: haemoglobin, leukocytes, ESR.
pub static CBC_SCREEN: Panel = Panel { tests: &[&HB, &WBC, &ESR], ..CBC };
pub static BIO_SCREEN: Panel = Panel { loinc: CMP.0, en: CMP.1, ru: CMP.2, tests: &[&GLUCOSE, &CHOLESTEROL] };
pub static BIO_DM: Panel = Panel { loinc: CMP.0, en: CMP.1, ru: CMP.2, tests: &[&GLUCOSE, &CREATININE] };
pub static BIO_LIPID: Panel = Panel { loinc: CMP.0, en: CMP.1, ru: CMP.2, tests: &[&CHOLESTEROL, &ALT] };
pub static BIO_FULL: Panel = Panel { loinc: CMP.0, en: CMP.1, ru: CMP.2, tests: &[&GLUCOSE, &CHOLESTEROL, &CREATININE, &ALT] };
pub static HBA1C: Panel = Panel { loinc: HBA1C_TEST.loinc, en: HBA1C_TEST.en, ru: HBA1C_TEST.ru, tests: &[&HBA1C_TEST] };
pub static TSH_TEST: Panel = Panel { loinc: TSH.loinc, en: TSH.en, ru: TSH.ru, tests: &[&TSH] };

/// A procedure: SNOMED CT code and display, Russian name.
pub type Proc = (&'static str, &'static str, &'static str);

pub const ECG: Proc = ("29303009", "Electrocardiographic procedure", "Электрокардиография (ЭКГ)");
pub const CHEST_XRAY: Proc = ("399208008", "Plain chest X-ray", "Флюорография органов грудной клетки");
pub const MAMMOGRAPHY: Proc = ("71651007", "Mammography", "Маммография");
pub const ECHO: Proc = ("40701008", "Echocardiography", "Эхокардиография");
pub const APPENDECTOMY: Proc = ("80146002", "Appendectomy", "Аппендэктомия");
pub const PCI: Proc = ("415070008", "Percutaneous coronary intervention", "Чрескожное коронарное вмешательство (стентирование)");
pub const DELIVERY: Proc = ("177184002", "Normal delivery procedure", "Ведение самопроизвольных родов");
pub const CESAREAN: Proc = ("11466000", "Cesarean section", "Кесарево сечение");

/// A vaccine: local code, Russian product name, CVX code and display, target disease,
/// route (v3-RouteOfAdministration code and display), dose in mL.
pub type Vaccine = (&'static str, &'static str, &'static str, &'static str, &'static str, (&'static str, &'static str), &'static str);

const IM: (&str, &str) = ("IM", "Injection, intramuscular");
pub const HEPB: Vaccine = ("hepb", "Вакцина против гепатита B (Регевак В)", "08", "Hep B, adolescent or pediatric", "Вирусный гепатит B", IM, "0.5");
pub const BCG: Vaccine = ("bcg", "Вакцина туберкулёзная (БЦЖ-М)", "19", "BCG", "Туберкулёз", ("IDINJ", "Injection, intradermal"), "0.1");
pub const PCV: Vaccine = ("pcv13", "Вакцина пневмококковая конъюгированная (Превенар 13)", "133", "Pneumococcal conjugate PCV 13", "Пневмококковая инфекция", IM, "0.5");
pub const DTP: Vaccine = ("dtp", "Вакцина АКДС", "01", "DTP", "Дифтерия, коклюш, столбняк", IM, "0.5");
pub const IPV: Vaccine = ("ipv", "Вакцина полиомиелитная инактивированная (Полимилекс)", "10", "IPV", "Полиомиелит", IM, "0.5");
pub const OPV: Vaccine = ("opv", "Вакцина полиомиелитная пероральная (Бивак полио)", "02", "OPV", "Полиомиелит", ("PO", "Swallow, oral"), "0.2");
pub const MMR: Vaccine = ("mmr", "Вакцина против кори, краснухи и паротита (Вактривир)", "03", "MMR", "Корь, краснуха, эпидемический паротит", ("SQ", "Injection, subcutaneous"), "0.5");
pub const TD: Vaccine = ("td", "Анатоксин дифтерийно-столбнячный (АДС-М)", "09", "Td (adult), adsorbed", "Дифтерия, столбняк", IM, "0.5");
pub const FLU: Vaccine = ("flu", "Вакцина гриппозная (Совигрипп)", "88", "influenza, unspecified formulation", "Грипп", IM, "0.5");

/// The national calendar for children: age in days, vaccine, dose number (those under 30 days
/// are given in the maternity hospital, the others at the check-up of that age).
pub const CALENDAR: [(i64, Vaccine, u32); 21] = [
    (0, HEPB, 1), (4, BCG, 1), (30, HEPB, 2), (61, PCV, 1), (91, DTP, 1), (91, IPV, 1), (137, DTP, 2), (137, IPV, 2),
    (137, PCV, 2), (183, DTP, 3), (183, IPV, 3), (183, HEPB, 3), (365, MMR, 1), (456, PCV, 3), (548, DTP, 4), (548, OPV, 4),
    (609, OPV, 5), (2190, MMR, 2), (2190, TD, 5), (2190, OPV, 6), (5110, TD, 6),
];

/// Child check-up ages in days (1, 2, 3, 4½, 6, 9, 12, 15, 18, 20 months; then yearly from the 2nd birthday).
pub const CHECKUPS: [i64; 10] = [30, 61, 91, 137, 183, 274, 365, 456, 548, 609];

/// An allergen: SNOMED CT code and display, Russian text, category, criticality, probability,
/// reaction (SNOMED CT code, display, Russian text), severity.
pub type Allergen = (&'static str, &'static str, &'static str, &'static str, &'static str, f64, Proc, &'static str);

pub const PENICILLIN: usize = 0;
pub const POLLEN: usize = 1;
pub const ALLERGENS: [Allergen; 5] = [
    ("764146007", "Penicillin", "Пенициллины", "medication", "high", 0.05, ("271807003", "Eruption of skin", "Кожная сыпь"), "moderate"),
    ("256259004", "Pollen", "Пыльца берёзы", "environment", "low", 0.1, ("76067001", "Sneezing", "Чихание, ринорея"), "mild"),
    ("260147004", "House dust mite", "Клещи домашней пыли", "environment", "low", 0.04, ("9826008", "Conjunctivitis", "Конъюнктивит"), "mild"),
    ("256349002", "Peanut", "Арахис", "food", "high", 0.015, ("126485001", "Urticaria", "Крапивница"), "moderate"),
    ("288328004", "Bee venom", "Яд пчелы", "environment", "high", 0.01, ("39579001", "Anaphylaxis", "Анафилактическая реакция"), "severe"),
];
